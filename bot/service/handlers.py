"""What each job kind does: one handler per kind, in the stage it belongs to.

- ``scan`` (scan/handler.py): scan a repo@revision, store the finding, queue its post when approved;
- ``upload`` (scan/handler.py): a push a webhook announced, turned into a ``scan`` job;
- ``mention`` (mentions/handler.py): an ``@provbot scan`` comment: decide, acknowledge, queue the scan;
- ``post`` (publish/handler.py): publish an approved finding.
"""

from __future__ import annotations

from provbot.bot.service.mentions.handler import handle_mention
from provbot.bot.service.publish.handler import handle_post
from provbot.bot.service.queue.runs import Handler
from provbot.bot.service.scan.handler import handle_scan, handle_upload

HANDLERS: dict[str, Handler] = {
    "scan": handle_scan,
    "post": handle_post,
    "mention": handle_mention,
    "upload": handle_upload,
}
