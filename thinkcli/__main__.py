"""The `think` entry point: `--version` answers before any import (Typer takes ~0.1 s, and so does
importlib.metadata: the version is the package's own, kept equal to pyproject's by a test)."""

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from . import __version__

        sys.stdout.write(f"think {__version__}\n")
        return
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
