"""The `think` entry point: `--version` answers before any import (Typer alone takes ~0.1 s)."""

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("thinkcli")
        except PackageNotFoundError:  # a checkout that was never installed
            ours = "unknown"
        sys.stdout.write(f"think {ours}\n")
        return
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
