"""Cache of a candidate's answers, per model revision, prompt set and sampling settings.

Candidates (the suspected originals) are asked the same prompts on every run; their answers only
change when their weights, the prompts or the sampling do, so they are kept as small JSON files.
A damaged cache file counts as a miss and is rewritten.

>>> import tempfile
>>> c = AnswerCache(tempfile.mkdtemp())
>>> k = c.key("org/m", "abc", "local", "identity-v1", ["en-who-1"], {"seed": 1})
>>> c.get(k) is None
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from provbot.detectors.identity.result import AnswerRecord

log = logging.getLogger(__name__)
_ANSWERS = TypeAdapter(list[AnswerRecord])


class AnswerCache:
    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root else None

    @staticmethod
    def key(
        ref: str, revision: str, backend: str, prompt_set: str, prompt_ids: list[str], sampling: dict[str, Any]
    ) -> str:
        blob = json.dumps([ref, revision, backend, prompt_set, prompt_ids, sampling], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path | None:
        return self.root / f"{key}.json" if self.root else None

    def get(self, key: str) -> list[AnswerRecord] | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            return _ANSWERS.validate_json(json.loads(path.read_text(encoding="utf-8"))["answers_json"])
        except (OSError, ValueError, KeyError, TypeError, ValidationError):
            log.warning("ignoring damaged identity cache file %s", path.name)
            return None

    def put(self, key: str, ref: str, answers: list[AnswerRecord]) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"ref": ref, "answers_json": _ANSWERS.dump_json(answers).decode()}
        # Write then rename, so a crash never leaves a half-written file that later reads as a hit.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh)
        os.replace(tmp, path)
