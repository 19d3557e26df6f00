"""Where a model's declared (forced) system prompt comes from.

In order, the first that exists wins:

1. ``system_prompt.txt`` at the model's root (provbot's convention; any text, stripped);
2. ``generation_config.json`` key ``system_prompt`` (a non-standard field some publishers use);
3. the chat template's default system message: the text the template inserts when the caller gives no
   system turn (as Qwen's templates do). Found by rendering the template twice, once with a probe system
   message and once without, and reading what sits in the probe's place.

>>> template_default_system(lambda msgs: "<s>" + "".join(f"<{m['role']}>{m['content']}" for m in
...     ([{"role": "system", "content": "You are Rio."}] if msgs[0]["role"] != "system" else []) + msgs))
'You are Rio.'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

DeclaredSource = Literal["given", "system_prompt.txt", "generation_config", "chat_template"]

_PROBE_SYS = "\u2063PROVBOT-SYSTEM-PROBE\u2063"
_PROBE_USER = "\u2063PROVBOT-USER-PROBE\u2063"
_MAX_PROMPT_CHARS = 20_000


class DeclaredPrompt(BaseModel):
    text: str
    source: DeclaredSource


Render = Callable[[list[dict[str, str]]], str]


def template_default_system(render: Render) -> str | None:
    """The system text a chat template inserts by itself, or None. ``render(messages) -> prompt text``."""
    try:
        with_sys = render([{"role": "system", "content": _PROBE_SYS}, {"role": "user", "content": _PROBE_USER}])
        without = render([{"role": "user", "content": _PROBE_USER}])
    except Exception:  # templates that reject a system role or raise on purpose: no default to read
        return None
    if with_sys.count(_PROBE_SYS) != 1:
        return None
    head, tail = with_sys.split(_PROBE_SYS)
    if not (without.startswith(head) and without.endswith(tail)) or len(without) < len(head) + len(tail):
        return None
    default = without[len(head) : len(without) - len(tail)].strip()
    return default or None


def declared_system_prompt(model_dir: Path | None, render: Render | None = None) -> DeclaredPrompt | None:
    """The declared system prompt of the model in ``model_dir`` (see module docs), or None."""
    if model_dir is not None:
        txt = model_dir / "system_prompt.txt"
        if txt.is_file():
            text = txt.read_text(encoding="utf-8", errors="replace").strip()[:_MAX_PROMPT_CHARS]
            if text:
                return DeclaredPrompt(text=text, source="system_prompt.txt")
        gen = model_dir / "generation_config.json"
        if gen.is_file():
            try:
                value = json.loads(gen.read_text(encoding="utf-8")).get("system_prompt")
            except (ValueError, AttributeError, UnicodeDecodeError):
                value = None  # a malformed generation config declares nothing; loading reports it if it matters
            if isinstance(value, str) and value.strip():
                return DeclaredPrompt(text=value.strip()[:_MAX_PROMPT_CHARS], source="generation_config")
    if render is not None:
        default = template_default_system(render)
        if default:
            return DeclaredPrompt(text=default[:_MAX_PROMPT_CHARS], source="chat_template")
    return None


_NAME = re.compile(r"\b(?:You are|You're|Your name is|You are called)\s+([A-Z][\w.\-]*[\w])", re.UNICODE)


def names_in_system_prompt(text: str | None) -> list[str]:
    """Persona names a system prompt assigns: ``names_in_system_prompt("You are Rio, a helpful bot.") == ["Rio"]``."""
    if not text:
        return []
    return list(dict.fromkeys(m.group(1) for m in _NAME.finditer(text)))
