"""``provbot console hash-password``: the scrypt hash for a console account (docs/console.md).

provbot console hash-password            # asks twice, prints scrypt$...
echo -n "$PW" | provbot console hash-password --stdin
"""

from __future__ import annotations

import sys

import typer

from provbot.detectors.errors import ConfigError

console_app = typer.Typer(
    name="console", help="The moderator web console (served by `provbot run`).", no_args_is_help=True
)


@console_app.command("hash-password")
def hash_password_cmd(
    stdin: bool = typer.Option(False, "--stdin", help="Read the password from standard input (no prompt)."),
) -> None:
    """Print the scrypt hash of a password for [console.accounts.NAME] password_hash (the password itself is never stored)."""
    from provbot.bot.service.console.auth import hash_password

    if stdin:
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise ConfigError("a console password needs at least 8 characters")
    typer.echo(hash_password(password))


def register(app: typer.Typer) -> None:
    app.add_typer(console_app, name="console")
