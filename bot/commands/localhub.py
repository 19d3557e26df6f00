"""``provbot localhub serve``: run the local Hub server in the foreground.

Example::

    provbot localhub serve --root ./hub --port 8765 --token hf_dev=alice --latency-ms 20
    provbot localhub serve --root ./hub --virtual ./specs --redirect --rate-windows --time-scale 60
    # prints: localhub serving ./hub at http://127.0.0.1:8765
"""

from __future__ import annotations

import threading
from pathlib import Path

import typer

from provbot.detectors.errors import ConfigError

localhub_app = typer.Typer(help="A local Hugging Face Hub server (tests, demos, benchmarks).", no_args_is_help=True)


def _parse_tokens(pairs: list[str]) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for pair in pairs:
        token, sep, user = pair.partition("=")
        if not sep or not token or not user:
            raise ConfigError("--token expects TOKEN=USER")
        tokens[token] = user
    return tokens


def _parse_quotas(pairs: list[str]) -> dict[str, int]:
    quotas: dict[str, int] = {}
    for pair in pairs:
        bucket, _, n = pair.partition("=")
        if bucket not in ("api", "resolvers") or not n.isdigit():
            raise ConfigError("--quota expects api=N or resolvers=N")
        quotas[bucket] = int(n)
    return quotas


@localhub_app.command("serve")
def serve(
    root: Path = typer.Option(..., "--root", help="Folder holding <org>/<name>/ repos.", file_okay=False),
    port: int = typer.Option(0, "--port", help="TCP port (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (keep it on loopback)."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0, help="Added before every response."),
    bandwidth_mbps: float | None = typer.Option(None, "--bandwidth-mbps", min=0.001, help="Cap per response."),
    link_mbps: float | None = typer.Option(
        None, "--link-mbps", min=0.001, help="Cap shared by all responses (one link)."
    ),
    redirect: bool = typer.Option(False, "--redirect", help="Answer LFS resolves with 302 to /cdn/ like the Hub."),
    virtual: Path | None = typer.Option(
        None, "--virtual", help="Folder of virtual repo specs (*.toml, *.json), or one spec file, to serve too."
    ),
    rate_windows: bool = typer.Option(
        False, "--rate-windows", help="Per-token rate-limit windows with the Hub's free/PRO quotas."
    ),
    pro: list[str] = typer.Option([], "--pro", help="USER whose token gets the PRO quotas; repeatable."),
    quota: list[str] = typer.Option(
        [], "--quota", help="BUCKET=N (api, resolvers): N requests per window for every token instead; repeatable."
    ),
    time_scale: float = typer.Option(
        1.0, "--time-scale", min=0.001, help="Hub seconds per real second in rate-limit windows (60: 5 min in 5 s)."
    ),
    token: list[str] = typer.Option([], "--token", help="TOKEN=USER; repeatable."),
    webhook: list[str] = typer.Option([], "--webhook", help="URL to POST webhook payloads to; repeatable."),
    webhook_secret: str | None = typer.Option(
        None, "--webhook-secret", envvar="LOCALHUB_WEBHOOK_SECRET", help="Sent as X-Webhook-Secret.", show_default=False
    ),
) -> None:
    """Serve ROOT over HTTP with the Hub's API until interrupted."""
    from provbot.bot.commands.common import require_demo_extra
    from provbot.bot.localhub import LocalHub, ServerOptions, WebhookTarget

    require_demo_extra("provbot localhub")

    options = ServerOptions(
        tokens=_parse_tokens(token),
        latency_ms=latency_ms,
        bandwidth_mbps=bandwidth_mbps,
        link_mbps=link_mbps,
        redirect_resolve=redirect,
        rate_windows=rate_windows,
        pro_users=pro,
        quotas=_parse_quotas(quota),
        time_scale=time_scale,
        webhooks=[WebhookTarget(url=u, secret=webhook_secret, id=f"localhub-{i + 1}") for i, u in enumerate(webhook)],
    )
    hub = LocalHub(root, options, host=host, port=port)
    if virtual is not None:
        ids = hub.add_virtual(virtual)  # a bad spec: SpecError, one line, before listening
        print(f"localhub: {len(ids)} virtual repos from {virtual}", flush=True)
    hub.start()
    print(f"localhub serving {root} at {hub.url}", flush=True)  # flushed: scripts wait for this line
    try:
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


def register(app: typer.Typer) -> None:
    app.add_typer(localhub_app, name="localhub")
