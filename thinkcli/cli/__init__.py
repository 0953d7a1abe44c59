"""The `think` command: Typer app, command groups registered from one module each.

The single place that maps exceptions to one-line messages and exit codes lives here in
`main()`: 1 error, 2 usage, 130 Ctrl-C. THINK_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="think",
    help="Local inference-time scaling: little compute for easy prompts, a lot for hard ones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register() -> None:
    from . import ask, classify_cmd

    ask.register(app)
    classify_cmd.register(app)
    for module_name in ("models", "chat", "batch"):
        try:
            module = __import__(f"thinkcli.cli.{module_name}", fromlist=["register"])
        except ModuleNotFoundError:
            continue
        module.register(app)


_register()


def error_line(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def main() -> None:
    from ..errors import ThinkError

    debug = bool(os.environ.get("THINK_DEBUG"))
    try:
        app(standalone_mode=False)
    except ThinkError as exc:
        if debug:
            raise
        error_line(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        # a downstream `head` closed the pipe: not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except SystemExit:
        raise
    except Exception as exc:  # Click usage errors and the unexpected
        import click

        if isinstance(exc, click.exceptions.Abort):
            sys.stderr.write("\ninterrupted\n")
            sys.exit(130)
        if isinstance(exc, click.ClickException):
            if debug:
                raise
            exc.show()
            sys.exit(exc.exit_code)
        if debug:
            raise
        error_line(f"{type(exc).__name__}: {exc} (THINK_DEBUG=1 shows the traceback)")
        sys.exit(1)
