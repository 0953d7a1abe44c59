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
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register() -> None:
    from . import ask, batch, chat, classify_cmd, models

    for module in (ask, chat, classify_cmd, batch, models):
        module.register(app)


_register()


def error_line(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def main() -> None:
    import signal

    from ..errors import ThinkError

    debug = bool(os.environ.get("THINK_DEBUG"))
    # Ctrl-C must interrupt even when started with SIGINT ignored (a background job, some CI runners).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = app(standalone_mode=False)  # Typer returns Exit codes (130 for Ctrl-C) in this mode
    except ThinkError as exc:
        if debug:
            raise
        error_line(str(exc))
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except BrokenPipeError:
        # a downstream `head` closed the pipe: not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except SystemExit:
        raise
    except Exception as exc:
        # Usage errors of Click (or the copy of it that Typer vendors) carry their own message.
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `think`: the help, not an error
            sys.stdout.write(exc.format_message() + "\n")  # type: ignore[attr-defined]
            sys.exit(0)
        if not debug and callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int):
            error_line(f"{exc.format_message()} (see --help)")
            sys.exit(exc.exit_code)
        if debug:
            raise
        error_line(f"{type(exc).__name__}: {exc} (THINK_DEBUG=1 shows the traceback)")
        sys.exit(1)
    if code == 130:
        sys.stderr.write("\ninterrupted\n")
    if isinstance(code, int) and code:
        sys.exit(code)
