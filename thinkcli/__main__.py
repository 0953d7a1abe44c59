"""The `think` entry point. `--version` and `--help` answer before Typer is imported (Typer and Click
take ~60 ms of a ~90 ms start): the version is the package's own, kept equal to pyproject's by a test;
the help is a snapshot of Typer's, kept equal to it by a test (see helptext.py)."""

import os
import sys


def _print_fast(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `think --help | head -1`: not an error; nothing more to flush at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    args = sys.argv[1:]
    if args == ["--version"]:
        from . import __version__

        _print_fast(f"think {__version__}\n")
        return
    if sys.stdout is not None and (not args or args[-1] in ("--help", "-h")):
        from .helptext import lookup

        text = lookup(args)
        if text is not None:
            _print_fast(text + "\n")
            return
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
