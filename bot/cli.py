"""The ``provbot`` command line: a thin layer over the library.

Each command group lives in its own module under ``bot/commands/`` and registers itself on the
Typer app. Errors a user can cause are :class:`~provbot.detectors.errors.ProvbotError` and print as one
line (``error: ...``) with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from provbot.detectors.errors import ProvbotError

# One module per command group; each defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = (
    "provbot.bot.commands.scan",
    "provbot.bot.commands.localhub",
    "provbot.bot.commands.index",
    "provbot.bot.commands.identity",
    "provbot.bot.commands.service",
    "provbot.bot.commands.console",
)

app = typer.Typer(
    name="provbot",
    help="Find undisclosed copies, fine-tunes and merges of models, from weights and behaviour.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a group not built yet must not break the others
            if exc.name == name:
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Console-script entry point: run the app, turning ProvbotError into one clear line."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Text from outside that still holds an unencodable character is printed as its escape, never a
    # crash mid-report (the library escapes what it reads; this covers every other path).
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    logging.basicConfig(
        level=os.environ.get("PROVBOT_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        app(standalone_mode=False)
    except ProvbotError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # usage errors: typer's own copy of click raises typer.TyperException
        import click

        if not isinstance(exc, (typer.TyperException, click.ClickException)):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # `provbot` or a group alone: its help
            exc.show()  # type: ignore[union-attr]
            sys.exit(0)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {message} (see --help)", err=True)
        sys.exit(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
