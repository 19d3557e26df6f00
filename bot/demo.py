"""``provbot demo``: the whole story offline, on the embedded defaults, in well under two minutes.

1. Generate tiny Llama models in-process: a base, a fine-tune of it (real training steps), an
   unrelated model, and a hidden 0.6/0.4 merge of base and fine-tune whose card claims to be original.
2. Start the local Hub server with them (the first three uploaded "days ago", the merge just now).
3. Start the bot (SQLite, in-process workers, review mode) with its webhook endpoint.
4. Let it poll: it finds the new upload, scans it against the known models, holds the finding.
5. Approve the finding as a moderator would: through the console's own HTTP endpoint (log in, open
   the finding, press approve); the bot posts a discussion on the merge's repo.
6. A repo owner mentions ``@provbot scan`` in another repo's discussion; the webhook arrives, the bot
   acknowledges, scans, and (after approval) replies with the result.

Everything runs on loopback; nothing is downloaded.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provbot.detectors.errors import ConfigError

BOT_TOKEN = "hf_demoBotToken000000000000000000"  # a local-only token of the local Hub's bot user
OWNER_TOKEN = "hf_demoOwnerToken00000000000000000"
WEBHOOK_SECRET = "demo-webhook-secret"
MODERATOR = "demo-moderator"
CONSOLE_PASSWORD = "demo-console-password"  # a local-only login of the demo's console

DEMO_MARKER = ".provbot-demo"  # marks a folder `--keep` made, the only kind it may empty again

BASE, TUNED, OTHER, MERGE = "lab/tiny-base", "lab/tiny-chat", "other-lab/tiny-unrelated", "sneaky/original-7b"


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _card(text: str, base_model: list[str] | None = None, relation: str | None = None) -> str:
    front = ["---", "license: apache-2.0", "library_name: transformers"]
    if base_model:
        front += ["base_model:"] + [f"- {b}" for b in base_model]
    if relation:
        front.append(f"base_model_relation: {relation}")
    return "\n".join([*front, "---", "", text, ""])


def generate_models(out: Path, *, steps: int = 12, seed: int = 0) -> dict[str, Path]:
    """Write the four demo models (safetensors + config + card) under ``out``; a few seconds on CPU."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )

    def init(s: int) -> LlamaForCausalLM:
        torch.manual_seed(s)
        return LlamaForCausalLM(cfg)

    base = init(seed)
    tuned = init(seed)
    tuned.load_state_dict(base.state_dict())
    # A real fine-tune: AdamW steps on a repeating token pattern (a "chat format" of sorts).
    opt = torch.optim.AdamW(tuned.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed + 7)
    tuned.train()
    for _ in range(steps):
        ids = torch.randint(0, 64, (8, 32), generator=gen) * 2 % 256
        loss = tuned(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    tuned.eval()
    other = init(seed + 1000)

    sd_base, sd_tuned = base.state_dict(), tuned.state_dict()
    merged = {k: (0.6 * sd_base[k].float() + 0.4 * sd_tuned[k].float()).contiguous() for k in sd_base}

    cards = {
        BASE: _card("# tiny-base\n\nA small base model pretrained by lab."),
        TUNED: _card("# tiny-chat\n\nThe chat fine-tune of lab/tiny-base.", [BASE], "finetune"),
        OTHER: _card("# tiny-unrelated\n\nAn independent model trained from scratch by other-lab."),
        MERGE: _card("# original-7b\n\nOur original model, designed and trained from scratch by sneaky."),
    }
    states = {BASE: sd_base, TUNED: sd_tuned, OTHER: other.state_dict(), MERGE: merged}
    folders: dict[str, Path] = {}
    for repo, state in states.items():
        folder = out / repo.replace("/", "__")
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().contiguous() for k, v in state.items()},
            str(folder / "model.safetensors"),
            metadata={"format": "pt"},
        )
        cfg.to_json_file(str(folder / "config.json"))
        (folder / "README.md").write_text(cards[repo])
        folders[repo] = folder
    return folders


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"demo: timed out waiting for {what}")


def _approve_in_console(url: str, finding_id: int) -> None:
    """Log in to the console, open the finding and press approve, as a moderator's click would."""
    from provbot.bot.service.console.client import ConsoleClient

    console = ConsoleClient(url).login(MODERATOR, CONSOLE_PASSWORD)
    try:
        console.decide(finding_id, "approve")
    finally:
        console.close()


def run_demo(keep: str | None = None, *, serve: bool = False) -> None:
    """The demo; ``serve``: afterwards leave the bot, its console and the local Hub running until Ctrl-C."""
    from huggingface_hub import HfApi

    from provbot.bot.localhub import LocalHub

    t0 = time.time()
    work = Path(keep).expanduser() if keep else Path(tempfile.mkdtemp(prefix="provbot-demo-"))
    if keep and work.exists():
        # Only an earlier demo's folder is emptied: `--keep ~/Documents` must never delete anything else.
        if not work.is_dir() or (any(work.iterdir()) and not (work / DEMO_MARKER).is_file()):
            raise ConfigError(
                f"{work} exists and is not an earlier demo's folder: give a new or empty folder to --keep"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / DEMO_MARKER).write_text("provbot demo files; `provbot demo --keep` may replace this folder\n")
    _say(f"provbot demo: working in {work}")

    _say("1. generating tiny models (base, fine-tune, unrelated, hidden 0.6/0.4 merge) ...")
    folders = generate_models(work / "models")

    hub = LocalHub(work / "hub").start()
    svc = None
    try:
        hub.add_token(BOT_TOKEN, "provbot")
        hub.add_token(OWNER_TOKEN, "lab")
        long_ago = datetime.now(UTC) - timedelta(days=3)
        for repo in (BASE, TUNED, OTHER):
            hub.add_repo(repo, folders[repo], created_at=long_ago)
        _say(f"2. local Hub at {hub.url} with {BASE}, {TUNED}, {OTHER}")

        # Explicit settings (the scan gets the local endpoint from them): nothing global is changed.
        from provbot.bot.service.console.auth import hash_password
        from provbot.bot.settings import BotSettings, ConsoleAccount, ConsoleSettings, Settings

        settings = Settings(
            hub_endpoint=hub.url,
            hub_token=BOT_TOKEN,
            data_dir=work,
            database_url=f"sqlite:///{work / 'provbot.db'}",
            bot=BotSettings(
                mode="review",
                min_parameters=0,
                candidates=[BASE, TUNED, OTHER],
                moderators=[MODERATOR],
                webhook_secret=WEBHOOK_SECRET,
                webhook_port=0,
                workers=2,
                lease_seconds=60,
                initial_lookback_hours=24,
                http_retries=3,
                backoff_max_seconds=5,
            ),
            console=ConsoleSettings(
                accounts={MODERATOR: ConsoleAccount(password_hash=hash_password(CONSOLE_PASSWORD), role="admin")}
            ),
        )
        from provbot.bot.service.context import BotContext
        from provbot.bot.service.review.decisions import Review
        from provbot.bot.service.runner import BotService

        ctx = BotContext.build(settings)
        svc = BotService(ctx, port=0).start()
        hub.add_webhook(f"{svc.url}/webhook", WEBHOOK_SECRET)
        _say(
            f"3. bot running in review mode: webhook {svc.url}/webhook, health {svc.url}/healthz, metrics {svc.url}/metrics"
        )
        _say(f"   moderator console: {svc.url}/console/ (login {MODERATOR} / {CONSOLE_PASSWORD})")

        hub.add_repo(MERGE, folders[MERGE])
        _say(f"4. someone uploads {MERGE} (card: 'trained from scratch'); the bot polls ...")
        reports = svc.poller.poll()
        enqueued = sorted({e for r in reports for e in r.enqueued})
        _say(f"   poll enqueued: {', '.join(enqueued) or 'nothing'}")
        svc.workers.wake()
        if not svc.wait_idle(90):
            raise TimeoutError("demo: the scan did not finish")
        review = Review(ctx)
        pending = [f for f in review.list() if f.repo == MERGE]
        if not pending:
            failed = [j.last_error for j in ctx.queue.list() if j.state == "failed"]
            recorded = [f.summary for f in review.list("all") if f.repo == MERGE]
            raise RuntimeError(f"demo: no finding held for review (recorded: {recorded}, errors: {failed})")
        finding = pending[0]
        _say(f"   finding #{finding.id} held for review: {finding.summary}")
        _say(f"5. moderator approves in the console ({svc.url}/console/finding/{finding.id}, as {MODERATOR}) ...")
        _approve_in_console(svc.url, finding.id)
        public = HfApi(endpoint=hub.url, token=False)
        disc = _wait(lambda: [d for d in public.get_repo_discussions(MERGE) if d.author == "provbot"], 30, "the post")[
            0
        ]
        body = next(e.content for e in public.get_discussion_details(MERGE, disc.num).events if e.type == "comment")
        _say(f'   posted: "{disc.title}"')
        _say("   " + "\n   ".join(body.splitlines()[:14]))
        _say("   ...")

        _say(f"6. the owner of {TUNED} asks in a discussion: '@provbot scan against {BASE} {OTHER}' ...")
        owner = HfApi(endpoint=hub.url, token=OWNER_TOKEN)
        thread = owner.create_discussion(TUNED, "Lineage check", description="Could the bot check our model?")
        owner.comment_discussion(TUNED, thread.num, f"@provbot scan against {BASE} {OTHER}")

        def bot_replies() -> list[str]:
            events = public.get_discussion_details(TUNED, thread.num).events
            return [e.content for e in events if e.type == "comment" and e.author == "provbot"]

        ack = _wait(bot_replies, 30, "the acknowledgement")[0]
        _say("   bot: " + ack.splitlines()[0])
        _wait(lambda: [f for f in review.list() if f.repo == TUNED], 90, "the mention's scan")
        mention_finding = [f for f in review.list() if f.repo == TUNED][0]
        _approve_in_console(svc.url, mention_finding.id)
        replies = _wait(lambda: (r := bot_replies()) and len(r) >= 2 and r, 30, "the result reply")
        _say("   bot: " + replies[1].splitlines()[0])
        if not svc.wait_idle(30):
            raise TimeoutError("demo: jobs did not settle")

        api = f"{hub.url}/api/models"
        _say("")
        _say(f"Done in {time.time() - t0:.1f} s. Where to look:")
        _say(f"  the bot's comment on the merge:   {api}/{MERGE}/discussions/{disc.num}")
        _say(f"  the mention thread and replies:   {api}/{TUNED}/discussions/{thread.num}")
        _say(f"  the audit log:                    provbot audit --database sqlite:///{work / 'provbot.db'}")
        _say(f"  the moderator console:            {svc.url}/console/ (login {MODERATOR} / {CONSOLE_PASSWORD})")
        _say(f"  all files (models, hub, database): {work}")
        if serve:
            _say("")
            _say(f"Bot, console and local Hub keep running: open {svc.url}/console/ and log in as above. Ctrl-C stops.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                _say("stopping")
        else:
            _say(
                "  (the local Hub stops when the demo ends; `provbot demo --serve` leaves bot, console and Hub running)"
            )
    finally:
        if svc is not None:
            svc.stop()
        hub.stop()


if __name__ == "__main__":  # pragma: no cover
    run_demo(sys.argv[1] if len(sys.argv) > 1 else None)
