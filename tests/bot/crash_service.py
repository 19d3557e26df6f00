"""A bot service in its own process, for the kill -9 test: ``python -m tests.bot.crash_service CONFIG_JSON``.

With ``hang`` set, the scan writes ``started_file`` and then blocks (the test kills the process there).
Without it, scans answer at once. Mode is ``auto`` so that a finished scan is posted without review.
"""

from __future__ import annotations

import json
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
            fh.write(req.ref + "\n")
        if cfg["hang"]:
            started.write_text("scanning")
            time.sleep(3600)
        return merge_result(req.ref, req.parents)

    settings = bot_settings(
        cfg["hub_url"],
        cfg["db_url"],
        mode="auto",
        candidates=cfg["candidates"],
        lease_seconds=cfg["lease_seconds"],
        workers=1,
    )
    ctx = BotContext.build(settings, scanner=scanner)
    svc = BotService(ctx, port=0, schedule=False).start()
    svc.poller.poll()
    svc.workers.wake()
    Path(cfg["ready_file"]).write_text(svc.url)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
