"""The `think` entry point. `--version` and `--help` answer before Typer is imported (Typer and Click
take ~60 ms of a ~90 ms start): the version is the package's own, kept equal to pyproject's by a test;
the help is a snapshot of Typer's, kept equal to it by a test (see helptext.py)."""

import os
import sys


def _print_fast(text: str) -> bool:
    """Writes `text` to stdout; False (nothing written) where stdout's encoding cannot hold it
    (PYTHONIOENCODING=ascii and a `…`) or stdout is closed: the ordinary path knows what to do there."""
    if sys.stdout is None:
        return False
    try:
        sys.stdout.write(text)  # a TextIOWrapper encodes the whole text before it writes any of it
        sys.stdout.flush()
    except UnicodeEncodeError:
        return False
    except BrokenPipeError:  # `think --help | head -1`: not an error; nothing more to flush at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return True


def main() -> None:
    args = sys.argv[1:]
    if args == ["--version"]:
        from . import __version__

        if _print_fast(f"think {__version__}\n"):
            return
    from .helptext import lookup  # tells a help request at once, and loads the snapshot only for one

    text = lookup(args)
    if text is not None and _print_fast(text + "\n"):
        return
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
