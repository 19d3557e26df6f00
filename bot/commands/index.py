"""``provbot index``: the candidate-parent index (add, seed, crawl, list, show, remove, candidates).

Examples::

    provbot index add ./my-model org/other-model@main
    provbot index seed --family qwen              # the known bases of config/known_bases.toml
    provbot index crawl --sort downloads --limit 200 --num-parameters min:6B
    provbot index list --json
    provbot index show org/other-model
    provbot index remove org/other-model
    provbot index candidates ./suspect-model      # ranked candidate parents, as `provbot scan` uses them

Every command takes ``--json``. The database is ``PROVBOT_DATABASE_URL`` (or ``--database``).
Models that fail (corrupt headers, missing repos) are reported one line each; the batch goes on
and the exit status is 1 when any failed.
"""

from __future__ import annotations

import json
import sys

import typer

from provbot.bot.commands.common import DATABASE as _DB
from provbot.bot.commands.common import choice_option

#: The Hub listings `index crawl --sort` walks (tests/bot/test_cli_help.py checks them against bot/index/crawl.py).
CRAWL_SORTS = ("downloads", "created_at", "last_modified", "likes", "trending_score")

index_app = typer.Typer(
    name="index", help="The candidate-parent index: known models, their families and sketches.", no_args_is_help=True
)

_JSON = typer.Option(False, "--json", help="Print JSON.")
_ENDPOINT = typer.Option(None, "--endpoint", metavar="URL", help="Hub endpoint (default: settings hub_endpoint).")


def _store(database: str | None):
    from provbot.bot.index.store import IndexStore
    from provbot.bot.settings import get_settings

    return IndexStore(database or get_settings().database_url)


def _hub(endpoint: str | None) -> tuple[str, str | None]:
    from provbot.bot.settings import get_settings

    s = get_settings()
    return endpoint or s.hub_endpoint, (s.hub_token.get_secret_value() if s.hub_token else None)


def _emit_outcomes(outcomes, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([o.model_dump(mode="json") for o in outcomes], indent=2))
    if any(o.status == "failed" for o in outcomes):
        # sys.exit, not typer.Exit: the entry point runs the app with standalone_mode=False, where
        # click turns typer.Exit into a return value and the process exited 0.
        sys.exit(1)


def _progress(as_json: bool):
    if as_json:
        return None

    def show(o) -> None:
        if o.status == "failed":
            typer.echo(f"failed     {o.message}", err=True)
        else:
            family = f"  family {o.family_key[:12]}" if o.family_key else ""
            typer.echo(f"{o.status:<10} {o.ref}{family}")

    return show


@index_app.command("add")
def add(
    refs: list[str] = typer.Argument(..., metavar="REF", help="Local folders or Hub repos (org/name[@revision])."),
    base: bool = typer.Option(False, "--base", help="Mark these models as family bases."),
    force: bool = typer.Option(False, "--force", help="Re-read models already indexed at the same commit."),
    endpoint: str | None = _ENDPOINT,
    database: str | None = _DB,
    as_json: bool = _JSON,
) -> None:
    """Index models: fingerprint, sketch and declared lineage. A new revision replaces the old one."""
    from provbot.bot.index.ingest import add_models

    url, token = _hub(endpoint)
    outcomes = add_models(
        refs, _store(database), endpoint=url, token=token, force=force, is_base=base, progress=_progress(as_json)
    )
    _emit_outcomes(outcomes, as_json)


@index_app.command("seed")
def seed(
    family: list[str] = typer.Option([], "--family", help="Seed only these families (repeatable)."),
    file: str | None = typer.Option(None, "--file", help="Known-base list (default: settings index.known_bases)."),
    force: bool = typer.Option(False, "--force"),
    endpoint: str | None = _ENDPOINT,
    database: str | None = _DB,
    as_json: bool = _JSON,
) -> None:
    """Index the known base models (config/known_bases.toml) and mark them as bases."""
    from provbot.bot.index.errors import KnownBasesError
    from provbot.bot.index.ingest import add_models
    from provbot.bot.index.known import known_bases_path, load_known_bases

    families = load_known_bases(known_bases_path(file))
    if family:
        unknown = sorted(set(family) - {f.name for f in families})
        if unknown:
            raise KnownBasesError(f"no family {', '.join(unknown)} in the known-base list")
        families = [f for f in families if f.name in family]
    url, token = _hub(endpoint)
    store = _store(database)
    outcomes = []
    for fam in families:
        outcomes += add_models(
            fam.models,
            store,
            endpoint=url,
            token=token,
            force=force,
            is_base=True,
            family_name=fam.name,
            progress=_progress(as_json),
        )
    _emit_outcomes(outcomes, as_json)


@index_app.command("crawl")
def crawl_cmd(
    sort: list[str] = choice_option([], "--sort", CRAWL_SORTS, "Listing to walk; repeatable (default: settings)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Models per listing (default: settings)."),
    num_parameters: str | None = typer.Option(None, "--num-parameters", help="Size filter, e.g. min:6B,max:128B."),
    name: str = typer.Option("default", "--name", help="Crawl name: separate resumable state."),
    endpoint: str | None = _ENDPOINT,
    database: str | None = _DB,
    as_json: bool = _JSON,
) -> None:
    """Walk the Hub's listings and index new or changed models (resumable, rate-limit aware)."""
    from provbot.bot.index.crawl import crawl
    from provbot.bot.settings import get_settings

    s = get_settings().index
    url, token = _hub(endpoint)
    report = crawl(
        _store(database),
        endpoint=url,
        token=token,
        sorts=sort or s.crawl_sorts,
        limit=limit or s.crawl_limit,
        num_parameters=num_parameters or s.crawl_num_parameters,
        name=name,
        progress=_progress(as_json),
    )
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo(
            f"listed {report.listed}: added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
            f"skipped {report.skipped}, failed {report.failed}, resumed {report.resumed}, "
            f"rate-limit waits {report.rate_limit_waits}"
        )
    if report.failed:
        sys.exit(1)  # see _emit_outcomes


@index_app.command("list")
def list_cmd(
    family: str | None = typer.Option(None, "--family", help="Only this family key (a prefix is enough)."),
    limit: int | None = typer.Option(None, "--limit", min=1),
    failures: bool = typer.Option(False, "--failures", help="List recent indexing failures instead."),
    database: str | None = _DB,
    as_json: bool = _JSON,
) -> None:
    """List indexed models (ref, family, parameters, base flag, revision)."""
    store = _store(database)
    if failures:
        rows = store.failures(limit or 100)
        if as_json:
            typer.echo(json.dumps([f.model_dump(mode="json") for f in rows], indent=2))
        else:
            if not rows:
                typer.echo("no indexing failures")
            for f in rows:
                typer.echo(f"{f.at:%Y-%m-%d %H:%M}  {f.message}")
        return
    records = store.list(limit=None if family else limit)
    if family:
        records = [r for r in records if r.family_key.startswith(family)][: limit or None]
    if as_json:
        typer.echo(json.dumps([_summary(r) for r in records], indent=2))
        return
    if not records:
        typer.echo(
            f"no indexed model in family {family}"
            if family
            else "the index is empty: `provbot index seed` indexes the known base models, "
            "`provbot index add REF...` any others"
        )
    for r in records:
        typer.echo(
            f"{r.family_key[:12]}  {'base ' if r.is_base else '     '} {_params(r.params):>8}  {r.ref}"
            f"  @{(r.revision or '-')[:12]}"
        )


@index_app.command("show")
def show(
    ref: str = typer.Argument(..., help="Indexed model (org/name or local folder)."),
    database: str | None = _DB,
    as_json: bool = _JSON,
) -> None:
    """Show one indexed model: fingerprint, declared lineage, conclusion, family size."""
    from provbot.bot.index.errors import NotIndexedError
    from provbot.bot.index.ingest import index_key

    store = _store(database)
    record = store.get(index_key(ref)) or store.get(ref)
    if record is None:
        raise NotIndexedError(f"{ref} is not in the index")
    data = record.model_dump(mode="json")
    data["family_size"] = len(store.family(record.family_key))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    fp = record.fingerprint
    typer.echo(f"{record.ref}  ({record.source}, revision {record.revision or '-'})")
    typer.echo(
        f"  family      {record.family_key}  ({data['family_size']} indexed){'  [base]' if record.is_base else ''}"
    )
    typer.echo(f"  loose key   {record.loose_key}")
    typer.echo(f"  arch        {json.dumps(fp.get('arch', {}), sort_keys=True)}")
    typer.echo(f"  size        {_params(record.params)} parameters, {fp.get('tensors')} tensors, {record.dtype}")
    typer.echo(
        f"  declared    base_model={record.declared.base_models or '-'} relation={record.declared.relation or '-'} "
        f"tags={record.declared.tags or '-'}"
    )
    typer.echo(f"  sketch      {record.sketch_elements or 0} values")
    if record.conclusion:
        typer.echo(f"  concluded   {json.dumps(record.conclusion)} (revision {record.conclusion_revision})")


@index_app.command("candidates")
def candidates_cmd(
    child: str = typer.Argument(..., help="Model to find parents for: local folder or org/name[@revision]."),
    top: int | None = typer.Option(
        None, "--top", min=1, help="Candidates passed to a scan, base included (default: settings)."
    ),
    endpoint: str | None = _ENDPOINT,
    database: str | None = _DB,
    as_json: bool = _JSON,
) -> None:
    """Rank the indexed models that could be CHILD's parents (what `provbot scan CHILD` uses)."""
    from provbot.bot.index.candidates import select_candidates
    from provbot.bot.settings import get_settings

    url, token = _hub(endpoint)
    report = select_candidates(
        child, store=_store(database), endpoint=url, token=token, top=top or get_settings().index.top
    )
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    typer.echo(f"{report.child}: {report.match} family {report.family_key[:12]} ({report.family_size} indexed)")
    if report.inconclusive:
        typer.echo(f"  inconclusive: {report.inconclusive}")
    for c in report.considered:
        mark = "*" if c.ref in report.chosen else " "
        typer.echo(f" {mark} {c.role:<9} {c.share:6.1%}  w={c.weight:+.3f}  {c.ref}  ({c.reason})")
    if report.fit_r2 is not None:
        typer.echo(f"  delta R^2 of the sketch fit: {report.fit_r2:.3f}; chosen: {', '.join(report.chosen)}")
    for note in report.notes:
        typer.echo(f"  note: {note}")


@index_app.command("remove")
def remove(
    refs: list[str] = typer.Argument(...),
    database: str | None = _DB,
    as_json: bool = _JSON,
) -> None:
    """Remove models from the index."""
    from provbot.bot.index.ingest import index_key

    store = _store(database)
    result = {ref: store.remove(index_key(ref)) or store.remove(ref) for ref in refs}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "removed": [r for r, ok in result.items() if ok],
                    "missing": [r for r, ok in result.items() if not ok],
                },
                indent=2,
            )
        )
    else:
        for ref, ok in result.items():
            typer.echo(f"{'removed' if ok else 'not indexed'}  {ref}")
    if not all(result.values()):
        raise typer.Exit(1)


def _summary(r) -> dict:
    return {
        "ref": r.ref,
        "source": r.source,
        "revision": r.revision,
        "family_key": r.family_key,
        "loose_key": r.loose_key,
        "model_type": r.model_type,
        "is_base": r.is_base,
        "family_name": r.family_name,
        "params": r.params,
        "dtype": r.dtype,
        "base_models": r.declared.base_models,
        "sketch_elements": r.sketch_elements,
    }


def _params(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(index_app())
