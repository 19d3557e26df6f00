"""A bot service in its own process, for the kill -9 tests: ``python -m tests.bot.crash_service CONFIG_JSON``.

With ``hang`` set, the scan writes ``started_file`` and then blocks (the test kills the process there).
Without it, scans answer after ``scan_delay`` seconds. Each scan call appends "<pid> <repo@revision>"
to ``calls_file``. Mode is ``auto`` so that a finished scan is posted without review.

With ``schedule`` set the service runs as ``provbot run`` does: it claims the poller lease and, while
it holds it, polls every ``poll_minutes``; otherwise it polls once at start, unscheduled.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from provbot.bot.service.context import BotContext
from provbot.bot.service.runner import BotService
from provbot.bot.service.scan.scanner import ScanRequest
from provbot.detectors.weights.result import ScanResult
from tests.bot.helpers import bot_settings, merge_result


def main() -> None:
    cfg = json.loads(sys.argv[1])
    started = Path(cfg["started_file"])

    def scanner(req: ScanRequest) -> ScanResult:
        with open(cfg["calls_file"], "a") as fh:
            fh.write(f"{os.getpid()} {req.ref}\n")
        if cfg["hang"]:
            started.write_text("scanning")
            time.sleep(3600)
        time.sleep(cfg.get("scan_delay", 0.0))
        return merge_result(req.ref, req.parents)

    schedule = bool(cfg.get("schedule", False))
    extra = {k: cfg[k] for k in ("poll_minutes", "poll_lease_seconds") if k in cfg}
    settings = bot_settings(
        cfg["hub_url"],
        cfg["db_url"],
        mode="auto",
        candidates=cfg["candidates"],
        lease_seconds=cfg["lease_seconds"],
        workers=cfg.get("workers", 1),
        **extra,
    )
    ctx = BotContext.build(settings, scanner=scanner)
    svc = BotService(ctx, port=0, schedule=schedule).start()
    if not schedule:
        svc.poller.poll()
        svc.workers.wake()
    Path(cfg["ready_file"]).write_text(json.dumps({"url": svc.url, "owner": svc.ownership.owner}))
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
