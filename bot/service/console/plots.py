"""SVG plots drawn on the server (no script, no outside resource): the fitted weight per layer with
its 95% CI band, one line per parent, and horizontal bars with CIs for the identity test.

Every label goes through :func:`html.escape` (and invisible characters are written out), so a
hostile repo name cannot inject markup into the SVG.

>>> from provbot.detectors.weights.result import LayerFit
>>> svg = layer_plot([LayerFit(layer=i, weights={"a/b": 0.6}, r2=0.99, ci={"a/b": (0.55, 0.65)}) for i in range(3)])
>>> svg.startswith("<svg") and "a/b" in svg and "<polygon" in svg
True
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from provbot.bot.service.publish.render import visible
from provbot.detectors.weights.result import LayerFit

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _t(text: str) -> str:
    return escape(visible(str(text)), quote=True)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / (n - 1) if hi > lo else 1.0
    return [lo + i * step for i in range(n)]


def layer_plot(layers: Sequence[LayerFit], *, width: int = 640, height: int = 280) -> str:
    """Weight per layer (x: layer, y: weight), one coloured line per parent, its CI as a band."""
    refs: list[str] = []
    for lf in layers:
        refs += [r for r in lf.weights if r not in refs]
    if not layers or not refs:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="40" role="img"><text x="8" y="24">no per-layer fit</text></svg>'
    left, right, top, legend_h = 48, 12, 12, 18 * len(refs) + 8
    bottom = 36 + legend_h
    pw, ph = width - left - right, height - top - bottom
    xs = sorted({lf.layer for lf in layers})
    values = [v for lf in layers for v in lf.weights.values()] + [
        b for lf in layers for ci in lf.ci.values() for b in ci
    ]
    lo, hi = min([0.0, *values]), max([1.0, *values])
    x0, x1 = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1

    def px(layer: int) -> float:
        return left + (layer - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return top + (hi - v) / (hi - lo) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="fitted weight per layer">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for v in _ticks(lo, hi):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 4}" y="{py(v) + 4:.1f}" font-size="10" text-anchor="end">{v:.2f}</text>')
    step = max(1, len(xs) // 12)
    for layer in xs[::step]:
        out.append(f'<text x="{px(layer):.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">{layer}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph + 28}" font-size="11" text-anchor="middle">layer</text>')
    for i, ref in enumerate(refs):
        colour = PALETTE[i % len(PALETTE)]
        pts = [
            (lf.layer, lf.weights[ref], lf.ci.get(ref))
            for lf in sorted(layers, key=lambda f: f.layer)
            if ref in lf.weights
        ]
        band = [(x, ci) for x, _, ci in pts if ci is not None]
        if band:
            upper = " ".join(f"{px(x):.1f},{py(ci[1]):.1f}" for x, ci in band)
            lower = " ".join(f"{px(x):.1f},{py(ci[0]):.1f}" for x, ci in reversed(band))
            out.append(
                f'<polygon class="ci" points="{upper} {lower}" fill="{colour}" fill-opacity="0.18" stroke="none"/>'
            )
        line = " ".join(f"{px(x):.1f},{py(w):.1f}" for x, w, _ in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, w, _ in pts:
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(w):.1f}" r="2.5" fill="{colour}"><title>{_t(ref)} layer {x}: {w:.3f}</title></circle>'
            )
        ly = height - legend_h + 4 + 18 * i
        out.append(f'<rect x="{left}" y="{ly}" width="14" height="10" fill="{colour}"/>')
        out.append(f'<text x="{left + 20}" y="{ly + 9}" font-size="11">{_t(ref)} (band: 95% CI)</text>')
    out.append("</svg>")
    return "".join(out)


def bar_plot(rows: Sequence[tuple[str, float, tuple[float, float] | None]], *, width: int = 640) -> str:
    """Horizontal bars of shares in [0, 1] with their 95% CI as whiskers; ``rows`` is (label, value, ci)."""
    if not rows:
        return ""
    label_w, bar_h, gap = 260, 14, 8
    pw = width - label_w - 60
    height = len(rows) * (bar_h + gap) + gap
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="identity test shares">'
    ]
    for i, (label, value, ci) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        text = _t(label if len(label) <= 44 else label[:21] + "…" + label[-22:])  # the tail names the model
        out.append(f'<text x="{label_w - 6}" y="{y + 11}" font-size="11" text-anchor="end">{text}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{pw}" height="{bar_h}" fill="#f0f0f0"/>')
        out.append(
            f'<rect x="{label_w}" y="{y}" width="{max(0.0, min(1.0, value)) * pw:.1f}" height="{bar_h}" fill="#1f77b4"/>'
        )
        if ci is not None:
            a, b = (label_w + max(0.0, min(1.0, c)) * pw for c in ci)
            mid = y + bar_h / 2
            out.append(f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{mid}" y2="{mid}" stroke="#000"/>')
            out.append(f'<line x1="{a:.1f}" x2="{a:.1f}" y1="{y + 2}" y2="{y + bar_h - 2}" stroke="#000"/>')
            out.append(f'<line x1="{b:.1f}" x2="{b:.1f}" y1="{y + 2}" y2="{y + bar_h - 2}" stroke="#000"/>')
        out.append(f'<text x="{label_w + pw + 4}" y="{y + 11}" font-size="11">{100 * value:.0f}%</text>')
    out.append("</svg>")
    return "".join(out)
