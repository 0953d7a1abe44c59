"""The `think` command: Typer app, command groups registered from one module each.

The single place that maps exceptions to one-line messages and exit codes lives here in
`main()`: 1 error, 2 usage, 130 Ctrl-C. THINK_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from ..helptext import HELP_FLAGS


class PipeClosed(Exception):
    """stdout's reader went away (`think ask … | head -c1`): not an error of ours."""


class _UnescapedHelp:
    """Typer escapes `[default: …]` for Rich's markup whenever Rich is installed, even with markup off,
    and the backslash reached the help (`\\[default: auto]`)."""

    def get_help(self, ctx: Any) -> str:
        return super().get_help(ctx).replace("\\[", "[")  # type: ignore[misc]


class Command(_UnescapedHelp, TyperCommand):
    """Every command of `think`."""


class Group(_UnescapedHelp, TyperGroup):
    """`think` and `think logs`; a closed pipe becomes PipeClosed before Click's own handler sees it
    (Click exits 1)."""

    def invoke(self, ctx: Any) -> Any:  # a Click context
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise PipeClosed() from None


app = typer.Typer(
    name="think",
    cls=Group,
    help="Local inference-time scaling: little compute for easy prompts, a lot for hard ones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": list(HELP_FLAGS)},
)


# Each command's module, in the order `think --help` lists them. Only the module of the command being run
# is imported (Typer turns every registered command's parameters into Click's at start: ~0.1 s for all).
MODULES = ("ask", "chat", "classify_cmd", "batch", "eval_cmd", "serve", "models", "logs_cmd")
COMMANDS = {"ask": "ask", "chat": "chat", "classify": "classify_cmd", "batch": "batch", "eval": "eval_cmd",
            "serve": "serve", "pull": "models", "models": "models", "ls": "models", "rm": "models",
            "doctor": "models", "logs": "logs_cmd"}


_registered: set[str] = set()


def register(argv: list[str]) -> None:
    """The commands `argv` may run: its command's module alone, or every one (help, a mistyped name).
    Each module registers once, however often this is asked (the help snapshot asks for all)."""
    import importlib

    first = next((arg for arg in argv if not arg.startswith("-")), None)
    for name in [COMMANDS[first]] if first in COMMANDS else MODULES:
        if name not in _registered:
            _registered.add(name)
            importlib.import_module(f"{__name__}.{name}").register(app)


def error_line(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"think {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                               callback=_version)] = False,
) -> None:
    """Local inference-time scaling: little compute for easy prompts, a lot for hard ones."""


def describe(exc: BaseException) -> tuple[str, int] | None:
    """The one table from exception to (one-line message, exit code); None for a bug."""
    from ..errors import ThinkError

    format_message = getattr(exc, "format_message", None)
    match exc:
        case ThinkError():
            return str(exc), exc.exit_code
        case _ if callable(format_message) and isinstance(getattr(exc, "exit_code", None), int):
            # usage errors of Click (or the copy of it that Typer vendors) carry their own message
            return f"{format_message()} (see --help)", exc.exit_code  # type: ignore[attr-defined]
        case UnicodeError():
            return "text that is not valid UTF-8 could not be used", 1
        case MemoryError():
            return "out of memory (try a smaller model, a smaller n_ctx or fewer --parallel)", 1
        case OSError() if exc.strerror:
            where = f": {exc.filename}" if exc.filename else ""
            return f"{exc.strerror}{where}", 1
    return None


def _warnings_as_lines() -> None:
    """The core reports what it survived (a run log it could not write) through `logging`."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logger = logging.getLogger("thinkcli")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def _standard_streams() -> None:
    """A closed stdin or stderr becomes /dev/null (an answer is never lost for want of stderr), and
    the hole is filled, so no file opened later takes descriptor 0, 1 or 2 by accident. A closed
    stdout leaves nowhere for the answer: one line on stderr, exit 1."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
            stream = open(fd, "r" if fd == 0 else "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
            setattr(sys, name, stream)
            if fd == 1:
                error_line("stdout is closed: there is nowhere to write the answer")
                sys.exit(1)


def main() -> None:
    import signal

    _standard_streams()
    _warnings_as_lines()
    debug = bool(os.environ.get("THINK_DEBUG"))
    # Ctrl-C must interrupt even when started with SIGINT ignored (a background job, some CI runners).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    register(sys.argv[1:])
    try:
        code = app(standalone_mode=False, prog_name="think")  # returns Exit codes (130 for Ctrl-C)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except (BrokenPipeError, PipeClosed):
        # a downstream `head` closed the pipe: not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except SystemExit:
        raise
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `think`: the help, not an error
            sys.stdout.write(exc.format_message() + "\n")  # type: ignore[attr-defined]
            sys.exit(0)
        if debug:
            raise
        described = describe(exc)
        if described is None:
            described = (f"internal error: {exc or type(exc).__name__} (THINK_DEBUG=1 shows the traceback)", 1)
        error_line(described[0])
        sys.exit(described[1])
    if code == 130:
        sys.stderr.write("\ninterrupted\n")
    if isinstance(code, int) and code:
        sys.exit(code)
