"""Markdown for an :class:`IdentityResult`, for comments and reports (next to the weight evidence).

>>> from detectors.identity.result import IdentityResult
>>> md = render_identity_markdown(IdentityResult.model_validate_json(open(
...     "tests/identity/fixtures/sample_result.json").read()))                # doctest: +SKIP
"""

from __future__ import annotations

from jinja2 import Environment, StrictUndefined

from detectors.identity.result import IdentityResult

_TEMPLATE = """\
### Identity test: {{ r.child }}

**{{ r.verdict }}**: {{ r.summary }}

{% for c in r.conditions -%}
**{{ "With system prompt" if c.condition == "with_system" else "Without system prompt" }}**\
{% if c.system_prompt %} (`{{ c.system_prompt | truncate(80) }}`{% if c.condition == "with_system" and r.system_prompt_source %}, {{ r.system_prompt_source }}{% endif %}){% endif %}: \
{{ c.answered }} answers{% if c.failed %}, {{ c.failed }} failed{% endif %}

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

| candidate | family claimed | child's claim rate | 5-gram overlap | baseline | longest shared run | strength |
|---|---|---|---|---|---|---|
{% for e in r.candidates -%}
| {{ e.ref }} | {{ e.family or "-" }}{% if e.family_generic %} (generic){% endif %} | \
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
_ENV.globals["pct"] = lambda x: f"{100 * x:.0f}%"


def render_identity_markdown(result: IdentityResult) -> str:
    """The result as a Markdown section: verdict, claim tables per condition, candidate table."""
    return _ENV.from_string(_TEMPLATE).render(r=result).strip() + "\n"
