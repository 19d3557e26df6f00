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
from pathlib import Path

import typer

from provbot.bot.commands.common import plain_help
from provbot.detectors.errors import ProvbotError

plain_help()

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


def _cache_headers() -> None:
    """The CLI keeps Hub models' headers on disk by commit (the library writes nothing unless asked)."""
    from provbot.bot.settings import get_settings
    from provbot.detectors.weights.header_cache import configure_header_cache

    configure_header_cache(get_settings().header_cache_dir)


def _new_default_database() -> Path | None:
    """The default SQLite file when it does not exist yet (a command may create it), else None."""
    try:
        from provbot.bot.settings import get_settings

        path = get_settings().default_database_file()
    except Exception:  # invalid settings: the command itself reports them
        return None
    return path if path is not None and not path.exists() else None


def main() -> None:
    """Console-script entry point: run the app, turning ProvbotError into one clear line."""
    new_database = _new_default_database()
    try:
        _run()
    finally:
        if new_database is not None and new_database.exists():
            typer.echo(
                f"provbot: created the database {new_database} "
                "(PROVBOT_DATA_DIR or PROVBOT_DATABASE_URL choose another place)",
                err=True,
            )


def _run() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Dependencies' own progress bars (transformers' "Loading weights", downloads) are noise next to
    # provbot's output; HF_HUB_DISABLE_PROGRESS_BARS=0 brings them back.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Text from outside that still holds an unencodable character is printed as its escape, never a
    # crash mid-report (the library escapes what it reads; this covers every other path).
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    logging.basicConfig(
        level=os.environ.get("PROVBOT_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        _cache_headers()
        # With standalone_mode=False click returns a command's `typer.Exit(code)` instead of exiting.
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
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
    except typer.TyperException as exc:  # usage errors: typer's own copy of click raises these
        if type(exc).__name__ == "NoArgsIsHelpError":  # `provbot` or a group alone: its help
            exc.show()  # type: ignore[union-attr]
            sys.exit(0)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {message} (see --help)", err=True)
        sys.exit(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
