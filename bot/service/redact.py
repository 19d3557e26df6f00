"""Keep secrets out of logs and audit records.

>>> r = Redactor(["s3cret-value"])
>>> r.text("token=s3cret-value and hf_abcdefghijklmnop")
'token=[redacted] and [redacted]'
>>> r.data({"a": ["Bearer xyz123"]})
{'a': ['Bearer [redacted]']}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

# Hub user/org tokens and bearer headers, whatever their value: a token that was never configured
# (pasted into a comment, say) must not be stored either.
_PATTERNS = [
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), "[redacted]"),
    (re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+"), r"\1 [redacted]"),
]


class Redactor:
    """Replaces known secret values and token-shaped strings with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first so that a secret containing another is removed whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, "[redacted]")
        for pattern, repl in _PATTERNS:
            value = pattern.sub(repl, value)
        return value

    def data(self, value: Any) -> Any:
        """Redact every string inside nested dicts/lists/tuples (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (args included) of every record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw template
            message = str(record.msg)
        record.msg = self.redactor.text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self.redactor.text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        return True


def install_log_redaction(redactor: Redactor) -> RedactingFilter:
    """Attach a redacting filter to every handler of the root logger (filters on loggers miss children)."""
    flt = RedactingFilter(redactor)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt
