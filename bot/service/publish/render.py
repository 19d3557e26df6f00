"""Render the bot's texts (discussions, moderation issues, mention replies) from Jinja2 templates.

Every value a template prints goes through :func:`md_escape` unless it is :class:`Trusted` (our own
numbers and fixed phrases). So repo names, card fields and comment text cannot inject markdown,
links, HTML or @mentions into what the bot posts.

>>> md_escape("[click](http://x.y) @alice *b*")
'\\\\[click\\\\]\\\\(http&#58;//x.y\\\\) &#64;alice \\\\*b\\\\*'
>>> r = Renderer()
>>> text = r.render("mention_ack.md.j2", repo="org/m", requester="@bob", against=[], base=None,
...                  held=False, bot="provbot", marker=Trusted("<!-- provbot:ack:1 -->"))
>>> "automated" in text and "&#64;bob" in text
True
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from provbot.bot.paths import TEMPLATES_DIR
from provbot.bot.service.publish.markers import marker_comment
from provbot.detectors.hub import is_repo_id, is_revision
from provbot.detectors.weights.result import ScanResult

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~$=])")


class Trusted(str):
    """A string the bot produced itself (formatted numbers, fixed phrases): printed as is."""


#: Longest text taken from one value (a name, a card field, a claim, a note) into a post.
FIELD_MAX = 1000
#: Longest post: the Hub refuses comments much above 65,000 characters; room is left for edits.
POST_MAX = 60_000
TRUNCATED = " … (truncated)"
# Bidi controls, zero-width and other invisible format characters (Trojan-Source spoofing), and
# control characters: shown as visible code points instead of acting on the text around them.
_INVISIBLE = re.compile(
    "[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u00ad\u061c\u180e"
    "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]"
)


def visible(text: str) -> str:
    r"""``text`` with invisible and direction-changing characters written out as ``[U+XXXX]``.

    >>> visible("abc\u202edcba")
    'abc[U+202E]dcba'
    """
    return _INVISIBLE.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def md_escape(value: Any, limit: int = FIELD_MAX) -> str:
    """Make ``value`` inert inside Hub markdown: no emphasis, links, HTML, tables, mentions, autolinks,
    no invisible or direction-changing characters, and at most ``limit`` characters of it.

    Newlines become spaces so a value cannot start a heading, list, quote or table row.
    """
    if value is None:
        return ""
    text = str(value).replace("\r", " ").replace("\n", " ")
    # Lone surrogates (from JSON escapes) cannot be encoded: replaced, never a crash.
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > limit:
        text = text[:limit] + TRUNCATED
    text = visible(text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = text.replace("@", "&#64;")  # the Hub notifies @names in raw markdown; an entity is not a mention
    text = re.sub(r"(?i)://", "&#58;//", text)  # no bare-URL autolinks
    text = re.sub(r"(?i)\bwww\.", "www&#46;", text)
    return text


def cap_post(text: str, limit: int = POST_MAX) -> str:
    r"""``text`` cut to ``limit`` characters, keeping its last lines (the footer and hidden marker).

    >>> out = cap_post("head\n" + "x" * 500 + "\n<!-- provbot:finding:1 -->\n", limit=200)
    >>> len(out) <= 200, out.endswith("<!-- provbot:finding:1 -->\n"), "(truncated" in out
    (True, True, True)
    """
    if len(text) <= limit:
        return text
    cut = text.rfind("<!-- provbot:")
    tail = text[cut:] if cut >= 0 and len(text) - cut < limit // 2 else ""
    note = "\n\n(truncated: this text was too long for one comment)\n\n"
    head = text[: max(limit - len(tail) - len(note), 0)]
    line = head.rfind("\n")
    if line >= len(head) - 2_000:  # end on a whole line unless one line is the whole problem
        head = head[:line]
    return head + note + tail


def _finalize(value: Any) -> Any:
    return value if isinstance(value, Trusted) else md_escape(value)


def num(value: float | int | None, digits: int = 3) -> Trusted:
    """Format a number for a table cell; ``None`` becomes an em dash."""
    if value is None:
        return Trusted("—")
    if isinstance(value, int):
        return Trusted(f"{value:,}")
    return Trusted(f"{value:.{digits}f}")


def sigma(value: float | None) -> Trusted:
    """Standard deviations, capped for display: beyond 10,000 the exact figure means nothing more.

    >>> sigma(5.8e9), sigma(12.345), sigma(None)
    ('more than 10,000', '12.3', '—')
    """
    if value is None:
        return Trusted("—")
    if abs(value) >= 10_000:
        return Trusted("more than 10,000" if value > 0 else "less than -10,000")
    return Trusted(f"{value:.1f}")


class Renderer:
    """Jinja2 environment over ``templates/`` with markdown escaping by default."""

    def __init__(self, templates_dir: str | None = None) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir or TEMPLATES_DIR)),
            finalize=_finalize,
            undefined=StrictUndefined,
            autoescape=False,  # HTML autoescape is the wrong escaping for markdown; finalize does it
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["num"] = num
        self.env.filters["sigma"] = sigma
        self.env.filters["pct"] = lambda v: Trusted("—") if v is None else Trusted(f"{100 * v:.1f}%")
        self.env.globals["Trusted"] = Trusted

    def render(self, name: str, **context: Any) -> str:
        return cap_post(self.env.get_template(name).render(**context).strip() + "\n")


# -- what the texts say ---------------------------------------------------------------------------

_VERDICTS = {
    "merge": "appear to be a weighted merge of other models",
    "finetune": "appear to be a fine-tune of another model",
    "copy": "appear to be a copy of another model",
    "quantized": "appear to be a quantized copy of another model",
    "related": "appear to share lineage with the models compared, though which of them is the parent could not be determined",
    "unrelated": "do not appear to derive from any of the models compared",
    "inconclusive": "could not be tied to or separated from the models compared with confidence",
}


def hedged_verdict(result: ScanResult) -> Trusted:
    """One hedged sentence fragment for the relation (never an accusation)."""
    return Trusted(_VERDICTS.get(result.relation, _VERDICTS["inconclusive"]))


def significant_parents(result: ScanResult, threshold: float = 0.05) -> list[str]:
    """Parents whose weight is clearly non-zero (CI above ``threshold``)."""
    if result.relation in ("unrelated", "inconclusive", "related"):
        return []
    return [p.ref for p in result.parents if p.ci[0] > threshold or (p.weight > threshold and p.ci == (0.0, 0.0))]


def layer_consistency(result: ScanResult) -> list[dict[str, Any]]:
    """Per parent: the spread of its fitted weight across layers (min, max) — a merge keeps it flat."""
    rows = []
    for p in result.parents:
        values = [lf.weights[p.ref] for lf in result.layers if p.ref in lf.weights]
        if values:
            rows.append(
                {
                    "ref": p.ref,
                    "layers": len(values),
                    "min": min(values),
                    "max": max(values),
                    "spread": result.weight_spread.get(p.ref),
                }
            )
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _rate(r: Any, unit: str = "") -> Trusted:
    """``75% (6/8; 95% interval 41-93%)``: every rate with its counts and Wilson interval.

    >>> from provbot.detectors.identity.result import Rate
    >>> _rate(Rate(count=79, n=100, rate=0.79, ci=(0.7, 0.858)), " of answers")
    '79% of answers (79/100; 95% interval 70-86%)'
    """
    return Trusted(f"{_pct(r.rate)}{unit} ({r.count}/{r.n}; 95% interval {100 * r.ci[0]:.0f}-{_pct(r.ci[1])})")


def _share(r: Any) -> Trusted:
    return _rate(r, " of answers")


_BASE_SOURCES = {
    "given": "named for the scan",
    "declared": "declared in a candidate's model card",
    "inferred": "the candidate the others are closest to",
    "closest": "the candidate nearest this model, not necessarily an ancestor",
}

_CONDITION_LABELS = {"with_system": "With its declared system prompt", "without_system": "Without a system prompt"}
_CONDITION_LEADS = {"with_system": "With its declared system prompt", "without_system": "Without its system prompt"}
_SOURCE_WORDS = {"system_prompt": "system prompt", "card": "model card", "repo_name": "repo name", "given": "given"}


def _persona(c: Any) -> dict[str, Any] | None:
    """The child's dominant self-claimed name (and maker) in one condition, for the sentence
    "Without its system prompt it calls itself X in N% of answers (95% interval a-b%)".

    The name, the maker and the candidate refs are model output or user input: left untrusted.
    """
    p = c.persona
    if p is None or p.name is None:
        return None
    name = p.name
    return {
        "lead": Trusted(_CONDITION_LEADS.get(c.condition, c.condition)),
        "name": name.label,
        "rate": _share(name),
        "declared": Trusted(", ".join(_SOURCE_WORDS[s] for s in name.declared)) if name.declared else None,
        "candidates": list(name.candidates),
        "generic": name.generic,
        "maker": p.maker.label if p.maker else None,
        "maker_rate": _share(p.maker) if p.maker else None,
        "maker_candidates": list(p.maker.candidates) if p.maker else [],
    }


def identity_context(check: Any | None, top_claims: int = 3) -> dict[str, Any] | None:
    """The behaviour check (a :class:`provbot.bot.service.identity_check.IdentityCheck`) as plain template data.

    Only numbers and fixed phrases are ``Trusted``; claim labels, self-claimed names and makers, candidate
    names and the quoted shared passage (model output: untrusted) are escaped when rendered. A failed run shows no details in posts
    (an error may name internal endpoints); the audit log and the finding keep the reason.
    """
    if check is None:
        return None
    if check.status != "ran" or check.result is None:
        reason = check.reason if check.status == "not_run" else None
        return {"ran": False, "reason": reason}
    r = check.result
    conditions = [
        {
            "label": Trusted(_CONDITION_LABELS.get(c.condition, c.condition)),
            "answered": num(c.answered),
            "failed": c.failed,
            "system_prompt": _clip(c.system_prompt, 80) if c.condition == "with_system" else None,
            "claims": [
                {
                    "label": k.label,
                    "generic": k.generic,
                    "own": k.family in {f.family for f in c.families if f.own},
                    "rate": _rate(k),
                }
                for k in c.claims[:top_claims]
            ],
            "persona": _persona(c),
        }
        for c in r.conditions
    ]
    candidates = [
        {
            "ref": e.ref,
            "family": e.family,
            "persona": e.family_label,
            "learned": bool(e.family and e.family.startswith("learned:")),
            "claim": _rate(e.claim) if e.claim else Trusted("—"),
            "overlap": Trusted(_pct(e.overlap.containment)),
            "baseline": Trusted(_pct(e.baseline.containment)),
            "run": num(e.overlap.lcs_max),
            "strength": Trusted(e.strength),
            "verbatim": e.verbatim,
        }
        for e in r.candidates
    ]
    top = r.top_candidate()
    passage = None
    if top is not None and top.verbatim and top.overlap.passages:
        text = top.overlap.passages[0]
        passage = {"ref": top.ref, "text": _clip(text, 160)}
    return {
        "ran": True,
        "verdict": Trusted(r.verdict),
        "points_to": top.ref if top is not None and top.strength != "none" else None,
        "conditions": conditions,
        "candidates": candidates,
        "passage": passage,
        "prompts": num(r.prompts),
        "samples": num(r.sampling.samples),
        "prompt_set": r.prompt_set,
        "backend": r.backend.kind,
        "reproduce": _identity_command(r),
    }


def _clip(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 3] + "..."


def _identity_command(r: Any) -> str | None:
    """``provbot identity ...`` for the same run, shown only when every name is a plain repo id (it is
    printed inside a code span, where escapes would show)."""
    repo, _, revision = r.child.partition("@")
    refs = [c.ref for c in r.candidates]
    if not all(is_repo_id(n) for n in [repo, *refs]) or (revision and not is_revision(revision)):
        return None
    cmd = [
        "provbot",
        "identity",
        r.child,
        *[f"--candidate {c}" for c in refs],
        f"--samples {r.sampling.samples}",
        f"--limit {r.prompts}",
        f"--prompt-set {r.prompt_set}",
    ]
    return Trusted(" ".join(cmd)) if re.fullmatch(r"[\w.-]+", r.prompt_set) else None


def report_context(
    *,
    repo: str,
    revision: str,
    result: ScanResult,
    declared: dict[str, Any],
    bot_username: str,
    against: list[str] | None = None,
    base: str | None = None,
    marker: str,
    identity: Any | None = None,
) -> dict[str, Any]:
    """Everything the finding templates need, as plain data (escaping happens at render time)."""
    found = significant_parents(result)
    declared_bases = [str(b) for b in declared.get("base_model") or []]
    undeclared = [p for p in found if p not in declared_bases]
    parents = against or [p.ref for p in result.parents]
    # Only a base the scan was given must be passed again; a declared or inferred one is found again.
    chosen_base = base or (result.base if result.base_source == "given" else None)
    cmd = ["provbot", "scan", f"{repo}@{revision}"]
    for parent in parents:
        cmd += ["--parent", parent]
    if chosen_base:
        cmd += ["--base", chosen_base]
    # Inside a code block escapes would show literally: print it raw only when every name is a valid repo id.
    names_ok = all(is_repo_id(n) for n in [repo, *parents, *([chosen_base] if chosen_base else [])])
    reproduce: str = Trusted(" ".join(cmd)) if names_ok and re.fullmatch(r"[\w.-]+", revision) else " ".join(cmd)
    return {
        "repo": repo,
        "revision": revision,
        "short_revision": revision[:12],
        "result": result,
        "verdict": hedged_verdict(result),
        "found": found,
        "undeclared": undeclared,
        "declared_bases": declared_bases,
        "declared_relation": declared.get("base_model_relation"),
        "layer_rows": layer_consistency(result),
        "base_source": Trusted(_BASE_SOURCES.get(result.base_source or "", "")),
        "total_bytes": sum(result.bytes_read.values()),
        "reproduce": reproduce,
        "bot": bot_username,
        "marker": Trusted(marker_comment(marker)),
        "identity": identity_context(identity),
        "reviewed_by": None,
        "public_url": None,
    }
