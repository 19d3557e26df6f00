"""Headers of a model revision, read once: in memory for the process, on disk when asked.

A file's first bytes at a commit never change, so the safetensors headers (and config.json) a
sketch, a family check and a scan all need are fetched once per process and, with a folder set,
once per machine. Only commit-pinned reads are cached (a branch name moves).

Disk entries are data from outside once written (another process, a full disk, an attacker with
write access): each is checked on load (magic, version, its own key, a length cap) and a bad one
is ignored with a warning. Writes are atomic (temporary file, then rename). No pickle.

Format: ``b"PVHC"``, u8 version, u64 file size (2**64-1: unknown), u16 key length, the key
(UTF-8), the SHA-256 of the cached bytes, then the cached bytes.

>>> cache = HeaderCache()
>>> key = CacheKey("https://hub", "org/m", "0" * 40, "model.safetensors")
>>> cache.put(key, b"abc", 100); cache.get(key)
(b'abc', 100)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"PVHC"
VERSION = 1
#: Largest cached entry: a safetensors header's cap (25 MB, as huggingface_hub) plus its length prefix.
MAX_ENTRY_BYTES = 8 + 25_000_000
#: Bytes kept in memory per process, least recently used dropped first.
MAX_MEMORY_BYTES = 512 * 2**20
_UNKNOWN = 2**64 - 1
_FIXED = struct.Struct("<4sBQH")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class CacheKey:
    """One file of one commit of one repo on one Hub."""

    endpoint: str
    repo: str
    sha: str
    file: str

    @property
    def pinned(self) -> bool:
        """Only a commit sha names content that never changes."""
        return bool(_COMMIT.fullmatch(self.sha))

    def text(self) -> str:
        return f"{self.endpoint}\n{self.repo}\n{self.sha}\n{self.file}"


class HeaderCache:
    """Immutable file prefixes by :class:`CacheKey`: memory always, ``folder`` when given."""

    def __init__(self, folder: str | os.PathLike[str] | None = None, max_memory_bytes: int = MAX_MEMORY_BYTES) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else None
        self.max_memory_bytes = max_memory_bytes
        self._lock = threading.Lock()
        self._memory: OrderedDict[CacheKey, tuple[bytes, int | None]] = OrderedDict()
        self._held = 0
        self.hits = self.disk_hits = self.misses = 0

    def path(self, key: CacheKey) -> Path | None:
        """Where ``key`` lives on disk: ``folder/<sha[:2]>/<sha>/<digest of endpoint, repo, file>.hdr``."""
        if self.folder is None or not key.pinned:
            return None
        digest = hashlib.sha256(key.text().encode()).hexdigest()[:32]
        return self.folder / key.sha[:2] / key.sha / f"{digest}.hdr"

    def get(self, key: CacheKey) -> tuple[bytes, int | None] | None:
        """(bytes, file size if known) cached for ``key``, or None."""
        if not key.pinned:
            return None
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return hit
        hit = self._load(key)
        with self._lock:
            if hit is None:
                self.misses += 1
                return None
            self.disk_hits += 1
        self._remember(key, *hit)
        return hit

    def put(self, key: CacheKey, data: bytes, size: int | None) -> None:
        if not key.pinned or len(data) > MAX_ENTRY_BYTES:
            return
        data = bytes(data)
        # A key already held was written (or loaded from disk) before, and a commit's bytes never
        # change: every scan keeps the headers it parsed, so rewriting them would cost a write each.
        if self._remember(key, data, size):
            self._store(key, data, size)

    def _remember(self, key: CacheKey, data: bytes, size: int | None) -> bool:
        """Hold ``key`` in memory; False when it was held already."""
        with self._lock:
            if key in self._memory:
                return False
            self._memory[key] = (data, size)
            self._held += len(data)
            while self._held > self.max_memory_bytes and len(self._memory) > 1:
                _, (old, _) = self._memory.popitem(last=False)
                self._held -= len(old)
            return True

    # -- disk ------------------------------------------------------------------------------------
    def _store(self, key: CacheKey, data: bytes, size: int | None) -> None:
        path = self.path(key)
        if path is None:
            return
        name = key.text().encode()
        head = _FIXED.pack(MAGIC, VERSION, _UNKNOWN if size is None else size, len(name)) + name
        head += hashlib.sha256(data).digest()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(head)
                    fh.write(data)
                os.replace(tmp, path)  # readers see the old entry or the whole new one, never half
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:  # a full or read-only disk costs the cache, not the scan
            log.warning("header cache: cannot write %s (%s)", path, exc.strerror or exc)

    def _load(self, key: CacheKey) -> tuple[bytes, int | None] | None:
        path = self.path(key)
        if path is None:
            return None
        try:
            with path.open("rb") as fh:
                raw = fh.read(_FIXED.size + 64 * 1024 + 32 + MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("header cache: cannot read %s (%s)", path, exc.strerror or exc)
            return None
        why = _check(raw, key)
        if isinstance(why, str):
            log.warning("header cache: ignoring %s: %s", path, why)
            return None
        return why


def _check(raw: bytes, key: CacheKey) -> tuple[bytes, int | None] | str:
    """The entry's (bytes, size), or why it is not a valid entry for ``key``."""
    if len(raw) < _FIXED.size:
        return "truncated"
    magic, version, size, name_len = _FIXED.unpack_from(raw)
    if magic != MAGIC:
        return "not a header cache entry"
    if version != VERSION:
        return f"version {version}, this provbot writes {VERSION}"
    name = raw[_FIXED.size : _FIXED.size + name_len]
    if name != key.text().encode():
        return "written for another file"
    at = _FIXED.size + name_len
    digest, data = raw[at : at + 32], raw[at + 32 :]
    if len(data) > MAX_ENTRY_BYTES:
        return "larger than any header"
    if hashlib.sha256(data).digest() != digest:
        return "corrupted (checksum mismatch)"
    return data, None if size == _UNKNOWN else size


_default = HeaderCache()
_default_lock = threading.Lock()


def default_header_cache() -> HeaderCache:
    """The process's cache: memory only unless :func:`configure_header_cache` gave it a folder."""
    return _default


def configure_header_cache(folder: str | os.PathLike[str] | None) -> HeaderCache:
    """Give the process's cache a folder (None: memory only). The library writes nothing unless asked."""
    global _default
    with _default_lock:
        wanted = Path(folder).expanduser() if folder is not None else None
        if _default.folder != wanted:
            _default = HeaderCache(wanted, _default.max_memory_bytes)
        return _default


__all__ = ["CacheKey", "HeaderCache", "configure_header_cache", "default_header_cache"]
