"""`think … --help` answers from a snapshot of Typer's help, without importing Typer: the snapshot must
be exactly what Typer prints, and only where Typer would print it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, run_think

from thinkcli._help_snapshot import HELP
from thinkcli.helptext import lookup, terminal_columns

SLOW_PATH = "import sys; from thinkcli.cli import main; sys.argv = ['think', *sys.argv[1:]]; main()"


def test_the_snapshot_is_what_typer_renders_today():
    from thinkcli.cli.help_snapshot import render_all

    assert render_all() == HELP, "a command's help changed: run `python -m thinkcli.cli.help_snapshot`"


def test_every_command_and_subcommand_is_in_the_snapshot():
    assert {"", "ask", "chat", "classify", "batch", "eval", "serve", "models", "pull", "rm", "doctor", "logs",
            "logs stats", "logs show", "logs path"} <= set(HELP)
    assert not any("\\[" in text for text in HELP.values())  # Typer's Rich escapes are taken out


@pytest.mark.parametrize("args", [["classify", "--help"], ["logs", "stats", "-h"], ["--help"], []])
def test_the_fast_help_is_byte_for_byte_typers_and_imports_no_typer(args):
    wide = {"COLUMNS": "120"}
    fast = subprocess.run([sys.executable, "-X", "importtime", "-m", "thinkcli", *args], capture_output=True,
                          text=True, cwd=REPO, env={**_env(), **wide}, timeout=60)
    slow = subprocess.run([sys.executable, "-c", SLOW_PATH, *args], capture_output=True, text=True, cwd=REPO,
                          env={**_env(), **wide}, timeout=60)
    assert fast.returncode == 0 and slow.returncode == 0, slow.stderr
    assert fast.stdout == slow.stdout and "Usage: think" in fast.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in fast.stderr.splitlines() if line.startswith("import")}
    assert not imported & {"typer", "click", "rich"}


def test_a_narrow_terminal_gets_typers_own_wrapping():
    narrow = run_think("classify", "--help", env={"COLUMNS": "60"})
    assert narrow.returncode == 0 and narrow.stdout.startswith("Usage: think classify")
    assert narrow.stdout != HELP["classify"] + "\n"
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 58


def test_anything_but_a_command_path_and_a_help_flag_goes_to_typer(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert lookup(["classify", "--help"]) == HELP["classify"]
    assert lookup([]) == HELP[""]
    assert lookup(["classify", "2+2", "--help"]) is None  # an argument before the flag
    assert lookup(["bogus", "--help"]) is None
    assert lookup(["classify", "--json"]) is None
    monkeypatch.setenv("COLUMNS", "79")
    assert lookup(["classify", "--help"]) is None


def test_columns_follow_shutils_rule(monkeypatch):
    import shutil

    for value in ("132", "0", "junk", "-5"):
        monkeypatch.setenv("COLUMNS", value)
        assert terminal_columns() == shutil.get_terminal_size().columns
    monkeypatch.delenv("COLUMNS")
    assert terminal_columns() == shutil.get_terminal_size().columns


def test_a_reader_that_leaves_during_the_help_is_not_an_error():
    r = subprocess.run(f"{sys.executable} -m thinkcli --help | head -c1", shell=True, capture_output=True,
                       text=True, cwd=REPO, env=_env(), timeout=60)
    assert r.stdout == "U" and "Error" not in r.stderr and "Traceback" not in r.stderr


def _env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "COLUMNS"}


def test_a_stdout_that_cannot_hold_the_help_gets_clicks_echo():
    """`…` in an ASCII stdout: the snapshot is not written at all, and Click's echo prints the help."""
    r = run_think("classify", "--help", env={"PYTHONIOENCODING": "ascii", "COLUMNS": "100"})
    assert r.returncode == 0 and r.stdout.startswith("Usage: think classify") and "Traceback" not in r.stderr
    assert r.stdout.count("Usage:") == 1
