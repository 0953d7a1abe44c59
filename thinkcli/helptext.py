"""`think … --help` without importing Typer and Click (~60 ms of a ~90 ms start): every command's help as
Typer renders it at 80 columns or more, kept in `_help_snapshot.py` and checked against Typer's own
rendering by tests/test_helptext.py. After changing a command's options or docstring, regenerate it:
`python -m thinkcli.cli.help_snapshot`. Narrower terminals, and anything not in the snapshot, take
the ordinary path through Typer.
"""

from __future__ import annotations

import os
import sys

HELP_FLAGS = ("-h", "--help")  # the app's help options too (cli/__init__.py), in the order its help lists them
SNAPSHOT_WIDTH = 80  # Click wraps help at min(columns, 80) - 2: at 80 columns or more it is the same text


def terminal_columns() -> int:
    """The columns Click sizes help by (shutil.get_terminal_size's rule: $COLUMNS, the terminal, 80),
    without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or SNAPSHOT_WIDTH


def lookup(args: list[str]) -> str | None:
    """The help that `think *args` prints, if these are exactly a command path and a help flag (or no
    arguments: bare `think` prints the help) and the terminal is wide enough for the snapshot."""
    if args and args[-1] in HELP_FLAGS:
        key = " ".join(args[:-1])
    elif not args:
        key = ""
    else:
        return None
    from ._help_snapshot import HELP

    text = HELP.get(key)
    if text is None or terminal_columns() < SNAPSHOT_WIDTH:
        return None
    return text
