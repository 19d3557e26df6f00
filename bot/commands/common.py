"""What every command group shares: readable help, refused choices, the demo extra's check.

* :func:`plain_help` makes typer's help show what a person types: ``CHILD`` and ``REF...`` for
  arguments, ``N``, ``PATH``, ``TEXT`` or ``a|b|c`` after options that take a value, nothing after
  flags (typer 0.29 would print ``<bool>``, ``<list[str]>`` and ``{child}``).
* :func:`choice` validates an option against a fixed list while the command line is parsed, so an
  invalid value is refused (one line, exit status 2) before any database is opened.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import typer

from provbot.detectors.errors import ConfigError

#: ``--database URL`` of every command that opens the database.
DATABASE = typer.Option(
    None,
    "--database",
    metavar="URL",
    help="SQLAlchemy URL (default: PROVBOT_DATABASE_URL, else provbot.db in the data folder).",
)


class MissingExtraError(ConfigError):
    """A command needs an optional part of provbot that is not installed."""


def require_demo_extra(what: str) -> None:
    """Refuse ``what`` (the local Hub, the demo) unless the ``demo`` extra is installed."""
    if importlib.util.find_spec("httptools") is None:
        raise MissingExtraError(f"{what} needs the demo extra: pip install 'provbot[demo]'")


def choice(values: Sequence[str], option: str) -> Callable[[Any], Any]:
    """A typer callback refusing any value of ``option`` outside ``values`` (single or repeated)."""
    allowed = tuple(values)

    def check(value: Any) -> Any:
        given = value if isinstance(value, (list, tuple)) else [value]
        for v in given:
            if v is not None and v not in allowed:
                raise typer.BadParameter(f"{v!r} is not one of {', '.join(allowed)}", param_hint=f"'{option}'")
        return value

    return check


def choice_option(default: Any, option: str, values: Sequence[str], help: str, *decls: str) -> Any:
    """``typer.Option`` for a value taken from ``values``, others refused.

    The help shows ``a|b|c`` when short, else the option's name (``--kind`` -> ``KIND``) and the
    values after the help text.
    """
    joined = "|".join(values)
    if len(joined) > 24:
        metavar = option.lstrip("-").replace("-", "_").upper()
        help = f"{help} One of: {', '.join(values)}."
    else:
        metavar = joined
    return typer.Option(default, option, *decls, help=help, metavar=metavar, callback=choice(values, option))


def _device(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r} is not auto, cpu, cuda or cuda:N", param_hint="'--device'")
    return value


def device_option(default: str | None, help: str) -> Any:
    """``--device auto|cpu|cuda[:N]``, others refused while parsing."""
    return typer.Option(default, "--device", help=help, metavar="auto|cpu|cuda[:N]", callback=_device)


def _label(annotation: Any) -> str:
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation) or (str,)
    if isinstance(annotation, type) and annotation is not bool and issubclass(annotation, (int, float)):
        return "N"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "PATH"
    return "TEXT"


def _argument_name(self: Any) -> str:
    return str(self.metavar) if self.metavar is not None else str(self.name).upper()


def _argument_usage(self: Any) -> str:
    name = _argument_name(self)
    name = name if self.required else f"[{name}]"
    return f"{name}..." if self.nargs != 1 else name


def _option_type(self: Any, ctx: Any = None) -> str | None:
    if self.metavar is not None:
        return str(self.metavar)
    if self.is_flag or self.count:
        return None
    desc = self.type_descriptor
    if desc.is_choice and desc.choices:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    return _label(desc.annotation)


def plain_help() -> None:
    """Patch typer's help rendering (typer 0.29; the dependency is pinned to that minor release)."""
    from typer.core import TyperArgument, TyperOption

    TyperArgument.display_name_raw = property(_argument_name)  # type: ignore[method-assign,assignment]
    TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]
    TyperArgument.display_type_rich = lambda self, ctx=None: None  # type: ignore[method-assign]
    TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
