"""``provbot scan``: weight-lineage scan of a child against candidate parents.

Example::

    provbot scan acme/rio --parent nex-agi/nex --parent qwen/qwen --json
    provbot scan ./child --parent ./a --parent ./b --base ./base --budget-mb 16 --max-requests 64

With ``--json`` stdout holds exactly one JSON object (the ``ScanResult`` schema); otherwise a
readable report. The progress bar goes to stderr, and only when stderr is a terminal.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from provbot.detectors.weights.result import ScanResult


def scan_command(
    child: str = typer.Argument(
        ..., help="Hub repo id org/name[@revision] or a local model directory.", metavar="CHILD"
    ),
    parent: list[str] = typer.Option([], "--parent", "-p", metavar="REF", help="Candidate parent (repeatable)."),
    base: str | None = typer.Option(None, "--base", metavar="REF", help="Declared shared ancestor of the candidates."),
    json_out: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    budget_mb: float | None = typer.Option(None, "--budget-mb", min=0.001, help="Bytes read per model (MiB)."),
    full: bool = typer.Option(
        False,
        "--full",
        help="Read every element (streams; CUDA when present); decodes packed int4 weights (GPTQ, AWQ, compressed-tensors, bitsandbytes).",
    ),
    endpoint: str | None = typer.Option(
        None, "--endpoint", metavar="URL", help="Hub endpoint (default: settings / PROVBOT_HUB_ENDPOINT)."
    ),
    max_requests: int | None = typer.Option(
        None,
        "--max-requests",
        min=0,
        help="Most range requests per model for a sampled read (0: no ceiling; default: settings, 256).",
    ),
) -> None:
    """Decide whether CHILD is a copy, fine-tune or merge of the candidates, from its weights.

    Without --parent and --base the candidates come from the candidate-parent index
    (``provbot index``): the child is fingerprinted and sketched, its family's models ranked, and the
    top few scanned; the notes say which were considered.
    """
    from provbot.bot.settings import get_settings
    from provbot.detectors.weights.scan import scan

    def run(progress=None) -> ScanResult:  # noqa: ANN001
        if not parent and base is None:
            from provbot.bot.index.autoscan import scan_with_index

            return scan_with_index(
                child, budget_mb=budget_mb, full=full, endpoint=endpoint, progress=progress, max_requests=max_requests
            )[1]
        settings = get_settings()
        return scan(
            child,
            parent,
            base=base,
            budget_mb=budget_mb,
            full=full,
            progress=progress,
            endpoint=endpoint or settings.hub_endpoint,
            token=settings.hub_token,
            max_requests=max_requests,
            options=settings.scan,
        )

    err = Console(stderr=True)
    if not json_out and err.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True
        ) as bar:
            task = bar.add_task("reading weights", total=None)

            def tick(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total, description=what[:60])

            result = run(tick)
    else:
        result = run()
    if not parent and base is None and result.relation == "inconclusive":
        if any(n.startswith("candidate search:") and "not indexed" in n for n in result.notes):
            result.notes.append(
                "next: index the models it may come from (`provbot index add REF...`, or `provbot index seed` "
                f"for the known bases) and scan again, or name them: `provbot scan {child} --parent REF`"
            )
    if json_out:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        render(result, Console())


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def render(r: ScanResult, console: Console) -> None:
    """The human report: verdict, parents with CIs, evidence, per-layer summary, bytes read."""
    head = Table(show_header=False, title=f"provbot scan: {r.child}", title_justify="left")
    head.add_row("relation", f"[bold]{r.relation}[/bold]")
    head.add_row("method", r.method or "-")
    head.add_row("reference of the fit", f"{r.base} ({r.base_source})" if r.base and r.base_source else (r.base or "-"))
    head.add_row("fit quality (delta R^2)", _num(r.fit_r2))
    head.add_row("evidence (sigma)", _num(r.z, ".1f"))
    if r.density is not None:
        head.add_row("kept share (TIES/DARE)", _num(r.density, ".3f"))
    head.add_row("tensors / elements", f"{r.tensors} / {r.elements}")
    head.add_row("bytes read", ", ".join(f"{k}: {v:,}" for k, v in r.bytes_read.items()))
    head.add_row("time", f"{_num(r.seconds, '.2f')} s")
    console.print(head)
    if r.parents:
        t = Table(title="parents", title_justify="left")
        for col in ("ref", "weight", "95% CI", "spread across tensors"):
            t.add_column(col)
        for p in r.parents:
            t.add_row(p.ref, f"{p.weight:.4f}", f"[{p.ci[0]:.4f}, {p.ci[1]:.4f}]", _num(r.weight_spread.get(p.ref)))
        console.print(t)
    if r.related:
        t = Table(title="related, not named as parents", title_justify="left")
        for col in ("ref", "role", "share of its delta carried", "95% CI"):
            t.add_column(col)
        for m in r.related:
            t.add_row(m.ref, m.role, _num(m.share), f"[{m.ci[0]:.4f}, {m.ci[1]:.4f}]" if m.ci else "-")
        console.print(t)
    if r.descent:
        t = Table(title="whole-delta tests (descendant or sibling)", title_justify="left")
        for col in ("ref", "from", "share carried", "95% CI", "per layer", "reading"):
            t.add_column(col)
        for d in r.descent:
            layers = " ".join(f"{s.layer}:{s.share:.2f}" for s in d.layers[:12]) + (
                " ..." if len(d.layers) > 12 else ""
            )
            t.add_row(d.ref, d.base, _num(d.share), f"[{d.ci[0]:.4f}, {d.ci[1]:.4f}]", layers or "-", d.outcome)
        console.print(t)
    if r.layers:
        refs = list(dict.fromkeys(k for layer in r.layers for k in layer.weights))
        t = Table(title="per layer", title_justify="left")
        t.add_column("layer")
        for ref in refs:
            t.add_column(ref)
        t.add_column("R^2")
        t.add_column("source")
        for layer in r.layers:
            t.add_row(
                str(layer.layer), *[_num(layer.weights.get(ref)) for ref in refs], _num(layer.r2), layer.source or ""
            )
        console.print(t)
    if r.components:
        t = Table(title="per component", title_justify="left")
        refs = list(dict.fromkeys(k for c in r.components for k in c.weights))
        for col in ("component", "tensors", *refs, "R^2"):
            t.add_column(col)
        for c in r.components:
            t.add_row(c.component, str(c.tensors), *[_num(c.weights.get(ref)) for ref in refs], _num(c.r2))
        console.print(t)
    if r.norms:
        console.print(
            "1-D tensors (norms, biases), reported apart: "
            + ", ".join(f"{k} {v:.3f}" for k, v in r.norms.items() if v is not None),
            highlight=False,
        )
    for note in r.notes:
        console.print(f"- {note}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_command)
