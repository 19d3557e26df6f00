"""Repos stored as folders: discovery, revisions, commit shas, file metadata and model info.

Layout under ``root``::

    root/<org>/<name>/            the ``main`` revision (the repo's files)
    root/<org>/<name>@<rev>/      another revision (branch or tag name without "/")
    root/<org>/<name>/.localhub.json   optional RepoConfig (private, gated, dates, counters)

Files whose name starts with ``.localhub`` and anything under ``.git/`` are never served.
A revision's commit sha is a sha1 of its file list with sizes and mtimes, so it changes whenever
a file does. Content hashes (ETag, blobId, lfs.sha256) are cached by (path, size, mtime) so a
multi-GB file is hashed at most once.

Listings (a revision's files and sha) are cached so that a small ranged read does not walk the
repo; see :meth:`RepoStore.resolve` for the rule that keeps them fresh.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "acme" / "tiny").mkdir(parents=True)
>>> _ = (root / "acme" / "tiny" / "config.json").write_text('{"model_type": "llama"}')
>>> store = RepoStore(root)
>>> len(store.resolve("acme/tiny", "main").sha)
40
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from provbot.bot.localhub.models import RepoConfig
from provbot.detectors.declared import parse_front_matter

CONFIG_FILE = ".localhub.json"
RESERVED_PREFIX = ".localhub"
DEFAULT_REVISION = "main"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# Files the Hub stores in LFS: big ones and the usual weight formats (their ETag is a sha256).
LFS_MIN_SIZE = 10 * 1024 * 1024
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".ckpt", ".npz")
# Files up to this size get a true content hash; bigger ones a fingerprint (size, mtime, head, tail)
# so that a HEAD on a multi-GB file never reads it whole.
FULL_HASH_MAX = 64 * 1024 * 1024
SAFETENSORS_MAX_HEADER = 25_000_000
# A cached listing is walked again after this long, so that files edited in place (which leave
# their folder's mtime alone) are seen within it.
REVISION_TTL_S = 0.5
# A folder (or settings file) whose mtime is this close to the moment it was read may change again
# within the same clock tick without a new mtime ("racy git"): such reads are not cached.
RACY_NS = 50_000_000


class HubError(Exception):
    """An HTTP error the server answers with, in the Hub's shape (status, X-Error-Code, message)."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def repo_not_found(repo_id: str, status: int = 404) -> HubError:
    return HubError(status, "RepoNotFound", f"Repository Not Found for url: {repo_id}.")


class GeneratedFile(Protocol):
    """A file whose bytes are computed, not stored (see :mod:`provbot.bot.localhub.virtual`)."""

    size: int
    fingerprint: str  # stands for the content: the same fingerprint, the same bytes
    header: dict[str, Any] | None  # its safetensors header, when it is a safetensors file

    def read(self, start: int, stop: int) -> bytes: ...


@dataclass(frozen=True)
class FileEntry:
    """One file of a revision; ``virtual`` holds a generated file's bytes (``path`` is then never opened)."""

    rfilename: str
    path: Path
    size: int
    mtime_ns: int
    inode: int = 0
    virtual: GeneratedFile | None = field(default=None, compare=False, repr=False)

    @property
    def cache_key(self) -> tuple[str, int, int, int]:
        return (str(self.path), self.size, self.mtime_ns, self.inode)

    @property
    def is_lfs(self) -> bool:
        return self.size >= LFS_MIN_SIZE or self.rfilename.endswith(LFS_SUFFIXES)


@dataclass(frozen=True)
class Revision:
    """A resolved revision: its folder, commit sha and files (sorted by name)."""

    repo_id: str
    name: str
    folder: Path
    sha: str
    files: dict[str, FileEntry]


@dataclass(frozen=True)
class _Listing:
    """A cached revision with what validates it: (path, inode, mtime) of its folders, and an expiry."""

    revision: Revision
    folders: tuple[tuple[str, int, int], ...]
    expires: float  # time.monotonic()

    def fresh(self) -> bool:
        if time.monotonic() >= self.expires:
            return False
        for path, inode, mtime_ns in self.folders:
            try:
                st = os.stat(path)
            except OSError:
                return False
            if st.st_ino != inode or st.st_mtime_ns != mtime_ns:
                return False
        return True


_stamp_lock = threading.Lock()
_last_stamp = 0


def unique_mtime_ns() -> int:
    """A strictly increasing timestamp for files this process writes.

    File mtimes are only as fine as the kernel's clock tick (a few ms), so two quick writes of a
    same-size file could otherwise look unchanged to the stat-based commit sha.
    """
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1000)
        return _last_stamp


def touch_unique(path: Path) -> None:
    stamp = unique_mtime_ns()
    os.utime(path, ns=(stamp, stamp))


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer text the Hub stores in git for an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def safetensors_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a safetensors file, or None when the file is not valid safetensors."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                return None
            (n,) = struct.unpack("<Q", raw)
            if n > SAFETENSORS_MAX_HEADER:
                return None
            data = fh.read(n)
        header = json.loads(data)
    except (OSError, ValueError, RecursionError):  # hostile files: not safetensors, never a crash
        return None
    return header if isinstance(header, dict) else None


def count_parameters(header: dict[str, Any]) -> dict[str, int]:
    """Parameters per dtype in one safetensors header."""
    counts: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        shape = info.get("shape", [])
        # Hostile headers: shapes that are not lists of small non-negative ints are not counted.
        if not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d < 2**48 for d in shape):
            continue
        n = 1
        for dim in shape:
            n *= dim
        dtype = str(info.get("dtype", "?"))[:16]
        counts[dtype] = counts.get(dtype, 0) + n
    return counts


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class RepoStore:
    """Reads repos from ``root``; thread-safe; caches hashes and headers by (path, size, mtime)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._hash_cache: dict[tuple[str, int, int, int], str] = {}
        self._header_cache: dict[tuple[str, int, int, int], dict[str, Any] | None] = {}
        self._info_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.revision_ttl_s = REVISION_TTL_S
        self._repo_dirs: dict[str, Path] = {}  # repo id -> main folder (validating ids costs more than a stat)
        self._listings: dict[str, _Listing] = {}  # folder -> its cached revision
        self._shas: dict[tuple[str, str], tuple[str, Path]] = {}  # (repo_id, sha) -> (revision name, folder)
        self._configs: dict[str, tuple[tuple[int, int, int], bytes]] = {}  # path -> (stat key, raw bytes)
        self._generation = 0  # bumped by invalidate(): a walk that straddles it is not cached
        self._virtual: dict[str, Revision] = {}  # repo id -> the one revision of a virtual repo

    # -- virtual repos ----------------------------------------------------------------------
    def add_virtual(self, repo_id: str, sha: str, files: Mapping[str, GeneratedFile], mtime_ns: int) -> None:
        """Serve a repo whose files are generated; it shadows a stored repo of the same id."""
        self.repo_dir(repo_id)  # validates the id
        folder = self.root / ".virtual" / repo_id  # never created: only names the cache keys
        entries = {name: FileEntry(name, folder / name, f.size, mtime_ns, 0, f) for name, f in sorted(files.items())}
        with self._lock:
            self._virtual[repo_id] = Revision(repo_id, DEFAULT_REVISION, folder, sha, entries)

    def is_virtual(self, repo_id: str) -> bool:
        return repo_id in self._virtual

    def read_small(self, entry: FileEntry) -> bytes:
        """A whole (small) file's bytes, stored or generated."""
        if entry.virtual is not None:
            return entry.virtual.read(0, entry.size)
        return entry.path.read_bytes()

    # -- locating repos and revisions -------------------------------------------------------
    def repo_dir(self, repo_id: str) -> Path:
        """Folder of the repo's main revision; raises HubError 404 for malformed ids."""
        base = self._repo_dirs.get(repo_id)
        if base is not None:
            return base
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(NAME_RE.match(p) for p in parts) or any(".." in p for p in parts):
            raise repo_not_found(repo_id)
        base = self.root / parts[0] / parts[1]
        if base.is_symlink() or base.parent.is_symlink():
            if not self.inside_root(base):  # a link out of the root: no such repo here
                raise repo_not_found(repo_id)
        if len(self._repo_dirs) < 100_000:  # bound memory on long-running servers
            self._repo_dirs[repo_id] = base
        return base

    def exists(self, repo_id: str) -> bool:
        if repo_id in self._virtual:
            return True
        try:
            return os.path.isdir(self.repo_dir(repo_id))
        except HubError:
            return False

    def config(self, repo_id: str) -> RepoConfig:
        """The repo's RepoConfig; a malformed ``.localhub.json`` reads as defaults (and is logged).

        The file's bytes are cached by its (mtime, inode, size): a request costs a stat, not a read.
        """
        path = os.path.join(self.repo_dir(repo_id), CONFIG_FILE)
        try:
            return RepoConfig.model_validate_json(self._config_bytes(path))
        except FileNotFoundError:
            return RepoConfig()
        except (OSError, ValidationError):
            import logging

            logging.getLogger(__name__).warning("ignoring malformed %s", path)
            return RepoConfig()

    def _config_bytes(self, path: str) -> bytes:
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        with self._lock:
            cached = self._configs.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        with open(path, "rb") as fh:
            data = fh.read()
        if st.st_mtime_ns < time.time_ns() - RACY_NS:  # see RACY_NS
            with self._lock:
                self._configs[path] = (key, data)
        return data

    def list_repo_ids(self) -> list[str]:
        """All repo ids (main folders) under root, sorted."""
        out: list[str] = sorted(self._virtual)
        if not self.root.is_dir():
            return out
        for org in sorted(self.root.iterdir()):
            if not org.is_dir() or not NAME_RE.match(org.name) or not self.inside_root(org):
                continue
            for repo in sorted(org.iterdir()):
                if repo.is_dir() and NAME_RE.match(repo.name) and self.inside_root(repo):
                    out.append(f"{org.name}/{repo.name}")
        return sorted(set(out))

    def inside_root(self, path: Path) -> bool:
        """Does ``path``, links followed, stay under the server's root? (Links out are never served.)"""
        try:
            return path.resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError):  # a loop of links
            return False

    def revision_names(self, repo_id: str) -> list[str]:
        if repo_id in self._virtual:
            return [DEFAULT_REVISION]
        base = self.repo_dir(repo_id)
        names = [DEFAULT_REVISION]
        for p in sorted(base.parent.glob(f"{base.name}@*")):
            rev = p.name.split("@", 1)[1]
            if p.is_dir() and REV_RE.match(rev) and self.inside_root(p):
                names.append(rev)
        return names

    def resolve(self, repo_id: str, revision: str | None) -> Revision:
        """Find a revision by name or commit sha; raises HubError (RepoNotFound/RevisionNotFound).

        Listings are cached per revision folder (and commit shas mapped to their folder). A cached
        listing is used while all of these hold, otherwise the folder is walked again:

        - no write was made through this store since (:meth:`invalidate`; ``LocalHub``'s
          ``add_repo``, ``update_repo``, ``delete_repo`` and ``set_repo_config`` call it);
        - the folder and each of its subfolders still has the inode and mtime it had when walked,
          so files added, deleted, renamed or replaced on disk are seen at once (a folder whose
          mtime was within ``RACY_NS`` of the walk is never trusted: it may change in the same tick);
        - it is younger than ``revision_ttl_s`` (0.5 s): a file rewritten in place changes no folder
          mtime, so such edits made outside the API are seen within that time.
        """
        found = self._resolve(repo_id, revision, walk=True)
        assert found is not None  # walk=True always answers or raises
        return found

    def resolve_cached(self, repo_id: str, revision: str | None) -> Revision | None:
        """:meth:`resolve` from the cache only: None when that would need a walk of the disk.

        Cheap (a few stats), so the server calls it on its event loop before hopping to a thread.
        """
        return self._resolve(repo_id, revision, walk=False)

    def _resolve(self, repo_id: str, revision: str | None, walk: bool) -> Revision | None:
        virtual = self._virtual.get(repo_id)
        if virtual is not None:
            if revision in (None, DEFAULT_REVISION, virtual.sha):
                return virtual
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        base = self.repo_dir(repo_id)
        if not os.path.isdir(base):
            raise repo_not_found(repo_id)
        rev = revision or DEFAULT_REVISION
        if rev == DEFAULT_REVISION:
            return self._load(repo_id, rev, base, walk)
        if REV_RE.match(rev):
            folder = base.parent / f"{base.name}@{rev}"
            if folder.is_dir() and (not folder.is_symlink() or self.inside_root(folder)):
                return self._load(repo_id, rev, folder, walk)
        if SHA_RE.match(rev):
            with self._lock:
                known = self._shas.get((repo_id, rev))
            if known is not None and os.path.isdir(known[1]):
                loaded = self._load(repo_id, known[0], known[1], walk)
                if loaded is not None and loaded.sha == rev:
                    return loaded
            if not walk:
                return None
            for name in self.revision_names(repo_id):
                folder = base if name == DEFAULT_REVISION else base.parent / f"{base.name}@{name}"
                loaded = self._load(repo_id, name, folder, walk)
                if loaded is not None and loaded.sha == rev:
                    with self._lock:
                        if len(self._shas) > 10_000:  # bound memory on long-running servers
                            self._shas.clear()
                        self._shas[(repo_id, rev)] = (name, folder)
                    return loaded
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")

    def invalidate(self, repo_id: str | None = None) -> None:
        """Forget cached listings and settings of one repo (all revisions), or of every repo."""
        base = str(self.repo_dir(repo_id)) if repo_id is not None else None
        with self._lock:
            self._generation += 1
            if base is None:
                self._listings.clear()
                self._shas.clear()
                self._configs.clear()
                return
            for key in [k for k in self._listings if k == base or k.startswith(base + "@")]:
                del self._listings[key]
            for sha_key in [k for k in self._shas if k[0] == repo_id]:
                del self._shas[sha_key]
            self._configs.pop(os.path.join(base, CONFIG_FILE), None)

    def _load(self, repo_id: str, name: str, folder: Path, walk: bool = True) -> Revision | None:
        """The folder's revision, from the cache when still valid (see resolve); None if that needs a walk."""
        key = str(folder)
        with self._lock:
            cached = self._listings.get(key)
            generation = self._generation
        if cached is not None and cached.fresh():
            return cached.revision
        if not walk:
            return None
        started_ns = time.time_ns()
        files: dict[str, FileEntry] = {}
        folders: list[tuple[str, int, int]] = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            try:
                st = os.stat(dirpath)
                folders.append((dirpath, st.st_ino, st.st_mtime_ns))
            except OSError:
                folders.append((dirpath, -1, -1))  # vanished while listing: never matches again
            for fn in filenames:
                if fn.startswith(RESERVED_PREFIX):
                    continue
                full = Path(dirpath) / fn
                if full.is_symlink() and not self.inside_root(full):
                    continue  # never serve a file outside the root through a link
                try:
                    st = full.stat()
                except OSError:
                    continue  # vanished while listing (or a dangling link)
                rel = full.relative_to(folder).as_posix()
                files[rel] = FileEntry(rel, full, st.st_size, st.st_mtime_ns, st.st_ino)
        files = dict(sorted(files.items()))
        listing = json.dumps([(f.rfilename, f.size, f.mtime_ns, f.inode) for f in files.values()]).encode()
        sha = hashlib.sha1(b"localhub-commit\0" + repo_id.encode() + b"\0" + listing).hexdigest()
        revision = Revision(repo_id, name, folder, sha, files)
        # No folders: it vanished before the walk, and an empty listing would validate forever.
        racy = not folders or any(mtime_ns >= started_ns - RACY_NS for _, _, mtime_ns in folders)
        with self._lock:
            if not racy and generation == self._generation:
                self._listings[key] = _Listing(revision, tuple(folders), time.monotonic() + self.revision_ttl_s)
        return revision

    # -- per-file metadata -----------------------------------------------------------------
    def cached_hash(self, entry: FileEntry) -> str | None:
        """:meth:`content_hash` when already computed, else None (no disk access)."""
        with self._lock:
            return self._hash_cache.get(entry.cache_key)

    def content_hash(self, entry: FileEntry) -> str:
        """sha256 for LFS files, git blob sha1 otherwise; a fingerprint for files over 64 MiB."""
        key = entry.cache_key
        cached = self.cached_hash(entry)
        if cached is not None:
            return cached
        if entry.virtual is not None:
            # Generated LFS files: the fingerprint of what computes them stands for their sha256.
            if entry.is_lfs or entry.size > FULL_HASH_MAX:
                digest = entry.virtual.fingerprint
            else:
                digest = _git_blob_sha1(entry.virtual.read(0, entry.size))
        elif entry.size > FULL_HASH_MAX:
            h = hashlib.sha256(b"localhub-fingerprint\0%d\0%d\0" % (entry.size, entry.mtime_ns))
            with open(entry.path, "rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read(1 << 20))
            digest = h.hexdigest()
        else:
            data = entry.path.read_bytes()
            digest = hashlib.sha256(data).hexdigest() if entry.is_lfs else _git_blob_sha1(data)
        with self._lock:
            self._hash_cache[key] = digest
        return digest

    def sibling(self, entry: FileEntry, blobs: bool) -> dict[str, Any]:
        """The ``siblings`` item for a file; blobId and lfs only when ``blobs`` (they need hashing)."""
        item: dict[str, Any] = {"rfilename": entry.rfilename, "size": entry.size}
        if blobs:
            digest = self.content_hash(entry)
            if entry.is_lfs:
                pointer = lfs_pointer(digest, entry.size)
                item["blobId"] = _git_blob_sha1(pointer)
                item["lfs"] = {"size": entry.size, "sha256": digest, "pointerSize": len(pointer)}
            else:
                item["blobId"] = digest
        return item

    def header(self, entry: FileEntry) -> dict[str, Any] | None:
        key = entry.cache_key
        with self._lock:
            if key in self._header_cache:
                return self._header_cache[key]
        header = entry.virtual.header if entry.virtual is not None else safetensors_header(entry.path)
        with self._lock:
            self._header_cache[key] = header
        return header

    # -- model info ------------------------------------------------------------------------
    def model_info(self, rev: Revision, blobs: bool = False) -> dict[str, Any]:
        """Every field this server knows for a revision, in the Hub's JSON shape (a fresh dict).

        Cached by (commit sha, settings file mtime): listings rebuild nothing that did not change.
        """
        try:
            st = (self.repo_dir(rev.repo_id) / CONFIG_FILE).stat()
            cfg_stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except OSError:
            cfg_stamp = (0, 0, 0)
        key = (rev.repo_id, rev.name, rev.sha, cfg_stamp, blobs)
        with self._lock:
            cached = self._info_cache.get(key)
        if cached is None:
            cached = self._build_info(rev, blobs)
            with self._lock:
                if len(self._info_cache) > 10_000:  # bound memory on long-running servers
                    self._info_cache.clear()
                self._info_cache[key] = cached
        return json.loads(json.dumps(cached))  # callers may trim or extend their copy

    def _build_info(self, rev: Revision, blobs: bool) -> dict[str, Any]:
        cfg = self.config(rev.repo_id)
        org = rev.repo_id.split("/")[0]
        card: dict[str, Any] = {}
        if "README.md" in rev.files:
            try:
                card = parse_front_matter(self.read_small(rev.files["README.md"]).decode(errors="replace"))
            except OSError:
                card = {}
        config: dict[str, Any] | None = None
        if "config.json" in rev.files:
            try:
                loaded = json.loads(self.read_small(rev.files["config.json"]))
                config = loaded if isinstance(loaded, dict) else None
            except (OSError, ValueError, RecursionError):
                config = None
        params: dict[str, int] = {}
        for entry in rev.files.values():
            if entry.rfilename.endswith(".safetensors"):
                header = self.header(entry)
                for dtype, n in count_parameters(header or {}).items():
                    params[dtype] = params.get(dtype, 0) + n
        gguf = self._gguf(rev)
        mtimes = [f.mtime_ns for f in rev.files.values()]
        last_modified = cfg.last_modified or (
            datetime.fromtimestamp(max(mtimes) / 1e9, UTC) if mtimes else datetime.now(UTC)
        )
        created_at = cfg.created_at or (datetime.fromtimestamp(min(mtimes) / 1e9, UTC) if mtimes else last_modified)
        base_models = card.get("base_model")
        if isinstance(base_models, str):
            base_models = [base_models]
        base_models = [b for b in base_models or [] if isinstance(b, str)]
        relation = card.get("base_model_relation")
        if not isinstance(relation, str):
            relation = "merge" if len(base_models) > 1 else "finetune"
        tags = self._tags(card, config, params, base_models, relation, cfg)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(rev.repo_id.encode()).hexdigest()[:24],
            "id": rev.repo_id,
            "modelId": rev.repo_id,
            "author": org,
            "sha": rev.sha,
            "lastModified": _iso(last_modified),
            "createdAt": _iso(created_at),
            "private": cfg.private,
            "gated": cfg.gated,
            "disabled": False,
            "downloads": cfg.downloads,
            "likes": cfg.likes,
            "tags": tags,
            "library_name": cfg.library_name or ("transformers" if config is not None else None),
            "pipeline_tag": cfg.pipeline_tag,
            "cardData": card or None,
            "config": config,
            "siblings": [self.sibling(f, blobs) for f in rev.files.values()],
            "usedStorage": sum(f.size for f in rev.files.values()),
        }
        if params:
            info["safetensors"] = {"parameters": params, "total": sum(params.values())}
        if gguf:
            info["gguf"] = gguf
            info["tags"] = list(dict.fromkeys([*info["tags"], "gguf"]))
        if base_models:
            info["baseModels"] = {"relation": relation, "models": [{"id": b} for b in base_models]}
        return info

    def _gguf(self, rev: Revision) -> dict[str, Any] | None:
        """The Hub's ``gguf`` summary (parameters, architecture, context length) of a repo's GGUF
        model: the file (or split series) a scan would read. None when there is none or it is not valid."""
        if not any(name.lower().endswith(".gguf") for name in rev.files):
            return None  # most repos: no need to import the GGUF reader (and torch) at all
        from provbot.detectors.errors import ProvbotError
        from provbot.detectors.weights.gguf_format import parse_header
        from provbot.detectors.weights.gguf_source import pick_gguf

        chosen = pick_gguf(sorted(rev.files))
        if not chosen:
            return None
        total, first = 0, None
        for name in chosen:
            entry = rev.files[name]
            try:
                if entry.virtual is not None:
                    header = parse_header(entry.virtual.read, name, entry.size)
                else:
                    with entry.path.open("rb") as f:
                        size = entry.path.stat().st_size

                        def read(start: int, end: int, f: Any = f) -> bytes:
                            f.seek(start)
                            return f.read(end - start)

                        header = parse_header(read, name, size)
            except (OSError, ProvbotError):  # hostile or broken files: no summary, never a crash
                return None
            first = first or header
            total += sum(t.numel for t in header.tensors)
        assert first is not None
        arch = first.get_str("general.architecture")
        out: dict[str, Any] = {"total": total, "architecture": arch}
        if arch and (ctx := first.get_int(f"{arch}.context_length")) is not None:
            out["context_length"] = ctx
        return out

    @staticmethod
    def _tags(
        card: dict[str, Any],
        config: dict[str, Any] | None,
        params: dict[str, int],
        base_models: list[str],
        relation: str,
        cfg: RepoConfig,
    ) -> list[str]:
        tags: list[str] = []
        card_tags = card.get("tags")
        if isinstance(card_tags, str):
            card_tags = [card_tags]
        for t in list(card_tags or []) + cfg.extra_tags:
            if isinstance(t, str):
                tags.append(t)
        if config is not None:
            tags.append("transformers")
            if isinstance(config.get("model_type"), str):
                tags.append(config["model_type"])
        if params:
            tags.append("safetensors")
        for b in base_models:
            tags += [f"base_model:{b}", f"base_model:{relation}:{b}"]
        return list(dict.fromkeys(tags))


def now_iso() -> str:
    return _iso(datetime.now(UTC))
