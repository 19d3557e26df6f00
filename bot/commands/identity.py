"""``provbot identity``: ask a model who it is, with and without its system prompt.

Examples::

    provbot identity org/child --candidate org/original --samples 3
    provbot identity ./child-dir --no-system-prompt --json
    provbot identity org/child --backend openai --endpoint http://127.0.0.1:8000 --candidate org/original
    provbot identity-serve ./child-dir --port 8000      # an OpenAI-compatible server for one local model
"""

from __future__ import annotations

import sys

import typer

from provbot.bot.commands.common import choice_option, device_option
from provbot.detectors.identity.errors import IdentityError

#: The choices of --backend (tests/bot/test_cli_help.py checks them against the library).
BACKENDS = ("local", "openai")


def identity(
    child: str = typer.Argument(..., help="Model: local folder, org/name or org/name@revision."),
    candidate: list[str] = typer.Option(
        [], "--candidate", "-c", metavar="REF", help="Suspected original: REF or REF=ENDPOINT_URL; repeatable."
    ),
    baseline: list[str] = typer.Option(
        [], "--baseline", metavar="REF", help="Unrelated model for the overlap baseline; repeatable."
    ),
    system_prompt: str | None = typer.Option(
        None, "--system-prompt", help="Use this system prompt instead of the declared one."
    ),
    no_system_prompt: bool = typer.Option(False, "--no-system-prompt", help="Only ask without any system prompt."),
    backend: str | None = choice_option(
        None, "--backend", BACKENDS, "Who answers (default: settings identity.backend)."
    ),
    endpoint: str | None = typer.Option(
        None, "--endpoint", metavar="URL", help="OpenAI-compatible endpoint serving CHILD."
    ),
    model_name: str | None = typer.Option(
        None, "--model-name", help="Model name to send to the endpoint (default: CHILD)."
    ),
    samples: int | None = typer.Option(
        None, "--samples", "-n", min=1, help="Times each prompt is asked per condition."
    ),
    prompt_set: str | None = typer.Option(
        None, "--prompt-set", help="Prompt set name or TOML path (default identity-v1)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N prompts (quick runs)."),
    device: str | None = device_option(None, "Local backend's device (default: settings)."),
    cpu_threads: int | None = typer.Option(None, "--cpu-threads", min=1, help="Local backend on CPU: torch threads."),
    as_json: bool = typer.Option(False, "--json", help="Print the IdentityResult as JSON."),
    answers: bool = typer.Option(False, "--answers", help="Keep every answer in the JSON (large)."),
) -> None:
    """Ask CHILD who it is (dozens of prompts, several languages), with and without its system prompt."""
    from provbot.bot.settings import get_settings
    from provbot.detectors.identity import DECLARED, render_identity_markdown, run_identity

    settings = get_settings()
    if system_prompt is not None and no_system_prompt:
        raise IdentityError("--system-prompt and --no-system-prompt exclude each other")
    chosen = None if no_system_prompt else (system_prompt if system_prompt is not None else DECLARED)
    progress = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not as_json else None
    result = run_identity(
        child,
        candidates=candidate,
        system_prompt=chosen,
        backend=backend,
        endpoint=endpoint,
        samples=samples,
        prompt_set=prompt_set,
        prompt_limit=limit,
        baselines=baseline,
        model_name=model_name,
        device=device,
        cpu_threads=cpu_threads,
        progress=progress,
        options=settings.identity,
        hub_endpoint=settings.hub_endpoint,
        hub_token=settings.hub_token.get_secret_value() if settings.hub_token else None,
    )
    if as_json:
        exclude = None if answers else {"conditions": {"__all__": {"answers"}}}
        typer.echo(result.model_dump_json(indent=2, exclude=exclude))
    else:
        typer.echo(render_identity_markdown(result))


def identity_serve(
    model: str = typer.Argument(..., help="Local folder or org/name of the model to serve."),
    port: int = typer.Option(8000, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="Keep it on loopback."),
    name: str | None = typer.Option(None, "--name", help="Model name reported by the server."),
    device: str = device_option("auto", "Where the model runs."),
) -> None:
    """Serve one local model over OpenAI chat-completions (stream off), for demos and tests."""
    from provbot.detectors.identity.backends.local import LocalBackend
    from provbot.detectors.identity.server import ChatServer

    print(f"serving {model} at http://{host}:{port}/v1/chat/completions", flush=True)
    ChatServer(LocalBackend.open(model, device=device), name).serve_forever(host, port)


def register(app: typer.Typer) -> None:
    app.command("identity")(identity)
    app.command("identity-serve")(identity_serve)
