"""Pulls against a local Hub on 127.0.0.1 (HF_ENDPOINT); the real Hub is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO
from hubserver import Hub

from thinkcli.errors import ModelError
from thinkcli.models.hub import choose_files, quant_of, safe_filename


@pytest.fixture
def hub(tiny, tmp_path, monkeypatch):
    model = tiny("tame").read_bytes()
    with Hub() as server:
        server.repos["unsloth/Qwen3-0.6B-GGUF"] = {
            "Qwen3-0.6B-Q4_K_M.gguf": model, "Qwen3-0.6B-Q8_0.gguf": model + b"8", "README.md": b"hi",
        }
        server.repos["acme/tiny-GGUF"] = {"tiny-Q5_K_M.gguf": model, "tiny-Q8_0.gguf": model}
        half = len(model) // 2
        server.repos["acme/split-GGUF"] = {
            "big-Q4_K_M-00001-of-00002.gguf": model[:half], "big-Q4_K_M-00002-of-00002.gguf": model[half:],
        }
        server.repos["acme/private-GGUF"] = {"x-Q4_K_M.gguf": model}
        server.private.add("acme/private-GGUF")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server


def test_quant_choice_and_names():
    names = ["m-Q8_0.gguf", "m-Q5_K_M.gguf", "m-Q4_K_M.gguf", "README.md"]
    assert choose_files(names, None) == ("m-Q4_K_M.gguf",)
    assert choose_files(names, "q8_0") == ("m-Q8_0.gguf",)
    assert choose_files(["m-Q8_0.gguf", "m-Q5_K_M.gguf"], None) == ("m-Q5_K_M.gguf",)  # closest
    with pytest.raises(ModelError, match="no Q2_K file"):
        choose_files(names, "Q2_K")
    assert quant_of("Qwen3-0.6B-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_of("gpt-oss-20b-mxfp4.gguf") == "MXFP4"


@pytest.mark.parametrize("bad", ["../x.gguf", "/etc/passwd.gguf", "a/../../x.gguf", "a\\..\\x.gguf", ""])
def test_unsafe_names_refused(bad):
    with pytest.raises(ModelError, match="unsafe"):
        safe_filename(bad)


def test_alias_pull_then_models_then_ask_then_rm(think, hub):
    r = think("pull", "qwen3-0.6b")
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path.name == "Qwen3-0.6B-Q4_K_M.gguf" and path.exists()
    assert "models--unsloth--Qwen3-0.6B-GGUF" in str(path)
    listed = {m["name"]: m for m in json.loads(think("models", "--json").stdout)}
    assert listed["qwen3-0.6b"]["downloaded"] and not listed["qwen3-4b"]["downloaded"]
    answer = think("ask", "-m", "qwen3-0.6b", "--max-thinking", "5", "--max-answer", "3", "--json", "hi")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["usage"]["thinking_tokens"] == 5
    assert think("rm", "qwen3-0.6b").returncode == 1  # no tty, no --yes: refuses
    removed = think("rm", "qwen3-0.6b", "--yes")
    assert removed.returncode == 0 and not path.exists()
    missing = think("ask", "-m", "qwen3-0.6b", "hi")
    assert missing.returncode == 1 and "run `think pull qwen3-0.6b`" in missing.stderr


def test_repo_pull_with_quant_and_fallback(think, hub):
    r = think("pull", "acme/tiny-GGUF")
    assert r.returncode == 0 and r.stdout.strip().endswith("tiny-Q5_K_M.gguf")  # closest to Q4_K_M
    r = think("pull", "acme/tiny-GGUF:Q8_0")
    assert r.stdout.strip().endswith("tiny-Q8_0.gguf")
    r = think("pull", "unsloth/Qwen3-0.6B-GGUF/Qwen3-0.6B-Q8_0.gguf")
    assert r.returncode == 0 and r.stdout.strip().endswith("Qwen3-0.6B-Q8_0.gguf")


def test_split_gguf_downloads_whole_and_loads(think, hub):
    r = think("pull", "acme/split-GGUF")
    assert r.returncode == 0, r.stderr
    files = r.stdout.split()
    assert len(files) == 2 and all(Path(f).exists() for f in files)
    assert Path(files[0]).read_bytes() + Path(files[1]).read_bytes() == hub.repos["acme/split-GGUF"]["big-Q4_K_M-00001-of-00002.gguf"] + hub.repos["acme/split-GGUF"]["big-Q4_K_M-00002-of-00002.gguf"]


def test_resume_after_the_server_cuts_the_transfer(think, hub):
    hub.cut_once.add("acme/tiny-GGUF/tiny-Q8_0.gguf")
    r = think("pull", "acme/tiny-GGUF:Q8_0")
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).read_bytes() == hub.repos["acme/tiny-GGUF"]["tiny-Q8_0.gguf"]
    gets = [path for method, path, _ in hub.log if path.endswith("tiny-Q8_0.gguf") and method == "GET"]
    assert len(gets) == 2, "the cut transfer was retried within the same pull"


def test_checksum_mismatch_is_refused_and_the_file_deleted(think, hub):
    hub.bad_sha.add("acme/tiny-GGUF/tiny-Q5_K_M.gguf")
    r = think("pull", "acme/tiny-GGUF")
    assert r.returncode == 1 and "checksum mismatch" in r.stderr
    assert not list(Path(os.environ["HF_HOME"]).rglob("tiny-Q5_K_M.gguf"))


def test_404_and_401_are_clear(think, hub):
    r = think("pull", "acme/nope-GGUF")
    assert r.returncode == 1 and "acme/nope-GGUF" in r.stderr and "Traceback" not in r.stderr
    r = think("pull", "acme/private-GGUF", env={"HF_TOKEN": "hf_secretsecret"})
    assert r.returncode == 1 and "access denied" in r.stderr and "HF_TOKEN" in r.stderr
    assert "hf_secretsecret" not in r.stderr + r.stdout
    assert any(a and "hf_secretsecret" in a for a in hub.auth_headers)  # it was sent, never shown


def test_offline_with_and_without_cache(think, hub):
    assert think("pull", "qwen3-0.6b").returncode == 0
    r = think("ask", "-m", "qwen3-0.6b", "--max-thinking", "3", "--max-answer", "2", "hi", env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    r = think("pull", "qwen3-1.7b", env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 1 and "offline" in r.stderr
    r = think("pull", "qwen3-1.7b", "--offline")
    assert r.returncode == 1 and "offline" in r.stderr


def test_ask_pull_flag_downloads_then_answers(think, hub):
    r = think("ask", "-m", "qwen3-0.6b", "--pull", "--max-thinking", "3", "--max-answer", "2", "--json", "hi")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == "qwen3-0.6b"


def test_doctor_reports(think, hub):
    r = think("doctor", "--json")
    data = json.loads(r.stdout)
    assert data["hf_endpoint"] == hub.url and data["backend"] in ("CPU", "CUDA", "Metal", "Vulkan")
    assert ("llama_cpp_python" in data and "gpu_install_hint" in data) or data["gpu_offload"]


def test_a_killed_pull_resumes_from_its_partial_file(think, hub, tmp_path):
    # 24 MB: huggingface_hub writes in 10 MB chunks, so half the file leaves one chunk on disk.
    data = os.urandom(24 * 1024 * 1024)
    hub.repos["acme/big-GGUF"] = {"big-Q4_K_M.gguf": data}
    key = "acme/big-GGUF/big-Q4_K_M.gguf"
    hub.hold[key] = threading.Event()
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "thinkcli", "pull", "acme/big-GGUF"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    blobs = Path(os.environ["HF_HOME"]) / "hub" / "models--acme--big-GGUF" / "blobs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # frozen part-way: a chunk on disk, the resume request waiting
        resumed = [r for m, p, r in hub.log if p.endswith("big-Q4_K_M.gguf") and m == "GET" and r]
        if resumed:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the pull never got part-way")
    proc.kill()
    proc.wait()
    hub.hold[key].set()
    del hub.hold[key]
    partial = list(blobs.glob("*.incomplete"))
    assert len(partial) == 1 and 0 < (have := partial[0].stat().st_size) < len(data)
    hub.log.clear()
    r = think("pull", "acme/big-GGUF")
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).read_bytes() == data
    gets = [rng for m, p, rng in hub.log if p.endswith("big-Q4_K_M.gguf") and m == "GET"]
    assert gets == [f"bytes={have}-"], "the second pull asked only for what was missing"
    assert not list(blobs.glob("*.incomplete"))


def test_no_network_is_one_clear_line_at_once(think):
    r = think("pull", "acme/tiny-GGUF", env={"HF_ENDPOINT": "http://127.0.0.1:9"})  # nothing listens on port 9
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "cannot reach the Hub at http://127.0.0.1:9" in r.stderr
    assert "Retry" not in r.stderr


def test_a_model_pulled_by_repo_is_usable_by_repo(think, hub):
    pulled = think("pull", "acme/tiny-GGUF")
    assert pulled.returncode == 0, pulled.stderr
    for ref in ("acme/tiny-GGUF", "acme/tiny-GGUF:Q5_K_M"):
        r = think("ask", "-m", ref, "--max-thinking", "3", "--max-answer", "2", "--json", "hi")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["model"] == ref
    offline = think("ask", "-m", "acme/tiny-GGUF", "--max-thinking", "3", "--max-answer", "2", "hi",
                    env={"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert offline.returncode == 0, offline.stderr
    listed = {m["name"]: m for m in json.loads(think("models", "--json").stdout)}
    assert listed["acme/tiny-GGUF"]["downloaded"] and listed["acme/tiny-GGUF"]["quant"] == "Q5_K_M"
    missing = think("ask", "-m", "acme/tiny-GGUF:Q8_0", "hi")
    assert missing.returncode == 1 and "think pull acme/tiny-GGUF:Q8_0" in missing.stderr
    hub.log.clear()
    fetched = think("ask", "-m", "acme/tiny-GGUF:Q8_0", "--pull", "--max-thinking", "3", "--max-answer", "2", "hi")
    assert fetched.returncode == 0, fetched.stderr
    hub.log.clear()
    again = think("ask", "-m", "acme/tiny-GGUF:Q8_0", "--pull", "--max-thinking", "3", "--max-answer", "2", "hi")
    assert again.returncode == 0 and hub.log == []  # cached: --pull asks the Hub nothing
    removed = think("rm", "acme/tiny-GGUF:Q8_0", "--yes")
    assert removed.returncode == 0 and "tiny-Q8_0.gguf" in removed.stdout
    assert think("ask", "-m", "acme/tiny-GGUF", "--max-thinking", "2", "--max-answer", "2", "hi").returncode == 0


def test_rm_answered_no_deletes_nothing_and_is_not_an_interruption(think, hub):
    import pexpect

    path = Path(think("pull", "acme/tiny-GGUF").stdout.strip())
    child = pexpect.spawn(sys.executable, ["-m", "thinkcli", "rm", "acme/tiny-GGUF"], cwd=str(REPO),
                          env=dict(os.environ), encoding="utf-8", timeout=60)
    child.expect(r"Delete tiny-Q5_K_M.gguf")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "nothing deleted" in child.before and "interrupted" not in child.before
    assert path.exists()


def test_doctor_with_a_broken_config_reports_everything_else_too(think, think_home):
    (think_home / "config").mkdir(parents=True)
    (think_home / "config" / "models.yaml").write_text("tiers: [\n")
    r = think("doctor")
    assert r.returncode == 1
    assert "llama_cpp_python" in r.stdout and "backend" in r.stdout and "hf_cache" in r.stdout
    assert "is not valid YAML" in r.stdout


def test_a_path_entry_under_home_is_listed_as_there(think, tiny, think_home, tmp_path):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    model = home / "models" / "mine.gguf"
    model.write_bytes(tiny("tame").read_bytes())
    (think_home / "config").mkdir(parents=True, exist_ok=True)
    (think_home / "config" / "models.yaml").write_text("models:\n  mine:\n    path: ~/models/mine.gguf\n    family: qwen3\n")
    r = think("models", "--json", env={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    listed = {m["name"]: m for m in json.loads(r.stdout)}
    assert listed["mine"]["downloaded"] is True and listed["mine"]["path"] == str(model)  # "no" before
