"""Markdown for an :class:`IdentityResult`, for comments and reports (next to the weight evidence).

>>> from provbot.detectors.identity.result import IdentityResult, Rate, SelfClaimRate

SOURCE_WORDS = {"system_prompt": "system prompt", "card": "model card", "repo_name": "repo name", "given": "given"}
>>> md = render_identity_markdown(IdentityResult.model_validate_json(open(
...     "tests/identity/fixtures/sample_result.json").read()))                # doctest: +SKIP
"""

from __future__ import annotations

from jinja2 import Environment, StrictUndefined

from provbot.detectors.identity.result import IdentityResult, Rate, SelfClaimRate

SOURCE_WORDS = {"system_prompt": "system prompt", "card": "model card", "repo_name": "repo name", "given": "given"}

_TEMPLATE = """\
### Identity test: {{ r.child }}

**{{ r.verdict }}**: {{ r.summary }}

{% for c in r.conditions -%}
**{{ "With system prompt" if c.condition == "with_system" else "Without system prompt" }}**\
{% if c.system_prompt %} (`{{ c.system_prompt | truncate(80) }}`{% if c.condition == "with_system" and r.system_prompt_source %}, {{ r.system_prompt_source }}{% endif %}){% endif %}: \
{{ c.answered }} answers{% if c.failed %}, {{ c.failed }} failed{% endif %}

{% if c.persona and c.persona.name -%}
Calls itself **{{ c.persona.name.label }}** in {{ rate(c.persona.name) }}{{ matches(c.persona.name) }}\
{% if c.persona.maker %}; made by **{{ c.persona.maker.label }}** in {{ rate(c.persona.maker) }}{{ matches(c.persona.maker) }}{% endif %}.\
{% if c.self_names | length > 1 %} Other names it gives itself: \
{% for k in c.self_names[1:5] %}{{ k.label }} {{ pct(k.rate) }} ({{ k.count }}/{{ k.n }}){% if not loop.last %}; {% endif %}{% endfor %}.{% endif %}
{% elif c.persona and c.persona.maker -%}
Gives no name for itself; made by **{{ c.persona.maker.label }}** in {{ rate(c.persona.maker) }}{{ matches(c.persona.maker) }}.
{% else -%}
Gives no name or maker for itself.
{% endif %}
| claim | kind | rate | 95% CI |
|---|---|---|---|
{% for k in c.claims[:8] -%}
| {{ k.label }}{% if k.generic %} (generic){% endif %} | {{ k.kind }} | {{ pct(k.rate) }} ({{ k.count }}/{{ k.n }}) | {{ pct(k.ci[0]) }}-{{ pct(k.ci[1]) }} |
{% else -%}
| (no known name or organisation) | | | |
{% endfor %}
{% endfor -%}
{% if r.candidates -%}
**Candidates** (overlap of the child's no-system answers with each candidate's; baseline: {{ r.baseline_source }})

| candidate | persona it claims | child's claim rate | 5-gram overlap | baseline | longest shared run | strength |
|---|---|---|---|---|---|---|
{% for e in r.candidates -%}
| {{ e.ref }} | {{ e.family_label or e.family or "-" }}{% if e.family_generic %} (generic){% endif %}\
{% if e.family and e.family.startswith("learned:") %} (learned){% endif %} | \
{% if e.claim %}{{ pct(e.claim.rate) }} ({{ pct(e.claim.ci[0]) }}-{{ pct(e.claim.ci[1]) }}){% else %}-{% endif %} | \
{{ pct(e.overlap.containment) }} | {{ pct(e.baseline.containment) }} | {{ e.overlap.lcs_max }} words | {{ e.strength }} |
{% endfor %}
{% for e in r.candidates if e.verbatim and e.overlap.passages -%}
Shared verbatim with {{ e.ref }}: {% for p in e.overlap.passages %}"{{ p }}"{% if not loop.last %}; {% endif %}{% endfor %}

{% endfor -%}
{% endif -%}
<sub>Prompt set {{ r.prompt_set }} ({{ r.prompts }} prompts x {{ r.sampling.samples }} samples; temperature {{ r.sampling.temperature }}, \
top-p {{ r.sampling.top_p }}, max tokens {{ r.sampling.max_tokens }}, seed {{ r.sampling.seed }}); backend {{ r.backend.kind }}\
{% if r.backend.device %} on {{ r.backend.device }}{% endif %}{% if r.seconds is not none %}; {{ r.seconds }} s{% endif %}.\
{% for n in r.notes %} {{ n[:1] | upper }}{{ n[1:] }}.{% endfor %}</sub>
"""

_ENV = Environment(undefined=StrictUndefined, autoescape=False, trim_blocks=False, lstrip_blocks=False)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _rate(r: Rate) -> str:
    """``95% of answers (38/40; 95% CI 83-99%)``."""
    return f"{_pct(r.rate)} of answers ({r.count}/{r.n}; 95% CI {100 * r.ci[0]:.0f}-{_pct(r.ci[1])})"


def _matches(r: SelfClaimRate) -> str:
    """What a self-claimed name is: the child's declared name (and where), a candidate's persona, generic."""
    what = [f"its declared name ({', '.join(SOURCE_WORDS[s] for s in r.declared)})"] if r.declared else []
    what += [f"the {'maker of' if r.kind == 'maker' else 'persona of'} {ref}" for ref in r.candidates]
    if r.generic:
        what.append("generic")
    elif r.listed and r.family and not r.declared:
        what.append(f"listed family {r.family}")
    return f", {'; '.join(what)}" if what else ""


_ENV.globals["pct"] = _pct
_ENV.globals["rate"] = _rate
_ENV.globals["matches"] = _matches


def render_identity_markdown(result: IdentityResult) -> str:
    """The result as a Markdown section: verdict, claim tables per condition, candidate table."""
    return _ENV.from_string(_TEMPLATE).render(r=result).strip() + "\n"
