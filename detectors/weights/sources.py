"""Weight sources: one interface over a local model directory and a Hub repo read by HTTP range.

A source knows its files, parses every safetensors header (sharded or not) into
:class:`~provbot.detectors.weights.safetensors_format.TensorMeta` records, and reads byte ranges. Hub
sources pin the revision to the commit sha from ``model_info`` so every read sees the same files,
run ranged GETs concurrently on huggingface_hub's shared HTTP client (connections are reused,
redirects followed) and retry 429/5xx/timeouts a bounded number of times.

>>> src = open_source("tests/fixtures/some-model")           # doctest: +SKIP
>>> src = open_source("org/name@main", endpoint="http://127.0.0.1:8000")  # doctest: +SKIP
>>> metas = src.tensors(); src.read_ranges([(m.file, m.start, m.end) for m in metas.values()][:1])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SecretStr

from provbot.detectors.declared import Declared, declared_from_folder
from provbot.detectors.errors import AccessDeniedError, BadAnswerError, NotFoundError, SourceError, WeightFormatError
from provbot.detectors.hub import Call, HubClient, ModelInfo, RetryPolicy, is_repo_id

__all__ = ["HubSource", "LocalSource", "WeightSource", "is_repo_id"]
from provbot.detectors.hub.transport import Retry, load_json_limited
from provbot.detectors.text import as_data
from provbot.detectors.weights.buffers import Buffer, join, read_buffer
from provbot.detectors.weights.byte_ranges import ByteRange, containing, merge_ranges
from provbot.detectors.weights.header_cache import CacheKey, HeaderCache, default_header_cache
from provbot.detectors.weights.safetensors_format import MAX_HEADER_BYTES, TensorMeta, header_length, parse_header

if TYPE_CHECKING:
    from huggingface_hub.utils import httpx

log = logging.getLogger(__name__)

#: First header request: most safetensors headers fit in 100 KB (as huggingface_hub does).
HEADER_PREFIX_BYTES = 100_000
#: config.json and the shard index are read whole; a hostile server must not make us buffer gigabytes.
MAX_JSON_BYTES = 50_000_000
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
#: Most shard files a local source keeps open at once (a normal `ulimit -n` is 1024).
MAX_OPEN_FILES = 64

T = TypeVar("T")
R = TypeVar("R")


class WeightSource(ABC):
    """A model's weights, local or remote. Subclasses implement file listing and raw reads.

    Counters ``bytes_read`` (headers and data) and ``requests`` (reads or HTTP requests made)
    are updated thread-safely.
    """

    #: Reads longer than this are split into concurrent parts (None: never).
    split_bytes: int | None = None

    def __init__(self, ref: str, concurrency: int = 1) -> None:
        self.ref = ref
        self.concurrency = max(1, concurrency)
        self.bytes_read = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._tensors: dict[str, TensorMeta] | None = None
        self._weight_map: dict[str, str] | None = None

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The model's config.json as a dict ({} when the model has none)."""

    @abstractmethod
    def declared(self) -> Declared:
        """The lineage the model's card declares (nothing when it has no card)."""

    @abstractmethod
    def _list_weight_files(self) -> tuple[list[str], dict[str, str] | None]:
        """(safetensors files, weight_map from the index or None)."""

    @abstractmethod
    def _read_prefix(self, file: str, n: int) -> tuple[bytes, int | None]:
        """The first ``n`` bytes of ``file`` (fewer if it is shorter) and the file size if known."""

    @abstractmethod
    def _read_one(self, file: str, start: int, end: int) -> Buffer:
        """Exactly the bytes ``[start, end)`` of ``file`` (a writable buffer where the source can)."""

    def raw_prefix(self, file: str, n: int) -> tuple[bytes, int | None]:
        """The first ``n`` bytes of any file (fewer if it is shorter) and its size when known,
        whatever its format (``_read_prefix`` reads a safetensors header)."""
        return self._read_prefix(file, n)

    # -- shared logic -------------------------------------------------------------------------
    def _count(self, nbytes: int, requests: int = 1) -> None:
        with self._lock:
            self.bytes_read += nbytes
            self.requests += requests

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if self.concurrency == 1 or len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def files(self) -> list[str]:
        return self._list_weight_files()[0]

    def tensors(self) -> dict[str, TensorMeta]:
        """Every tensor of every shard, by raw name (parsed once, then cached)."""
        if self._tensors is None:
            files, weight_map = self._list_weight_files()
            # The first shard's header length, plus a quarter, is a good guess for the others' (the
            # shards of one checkpoint hold similar numbers of tensors): with it, each further
            # shard's header comes in one request instead of a prefix and then the rest. A longer
            # one still gets its rest; a shorter one costs a few unneeded bytes.
            first = self._header_prefix(files[0], HEADER_PREFIX_BYTES)
            n = header_length(first[0][:8], f"{self.ref}/{files[0]}", first[1])
            guess = max(HEADER_PREFIX_BYTES, 8 + n + n // 4)
            headers = self._map(lambda f: self._header(f, guess, first if f == files[0] else None), files)
            out: dict[str, TensorMeta] = {}
            for metas in headers:
                out.update(metas)  # whole shards at once; a name held twice shows in the count
            if len(out) != sum(map(len, headers)):
                seen: dict[str, str] = {}
                for file, metas in zip(files, headers):
                    for name in metas:
                        if name in seen:
                            raise WeightFormatError(
                                f"{self.ref}: tensor {name!r} appears in both {seen[name]} and {file}"
                            )
                        seen[name] = file
            for name, shard in (weight_map or {}).items():
                if name not in out or out[name].file != shard:
                    raise WeightFormatError(
                        f"{self.ref}: the index puts tensor {name!r} in {shard}, which does not hold it"
                    )
            if not out:
                raise WeightFormatError(f"{self.ref}: the safetensors files hold no tensor")
            self._tensors = out
        return self._tensors

    def _header(
        self, file: str, prefix_bytes: int = HEADER_PREFIX_BYTES, read: tuple[bytes, int | None] | None = None
    ) -> dict[str, TensorMeta]:
        """Parse ``file``'s header, reading ``prefix_bytes`` first (or using the prefix already ``read``)."""
        prefix, size = read or self._header_prefix(file, prefix_bytes)
        n = header_length(prefix[:8], f"{self.ref}/{file}", size)
        if len(prefix) < 8 + n:
            prefix = prefix + self._read_one(file, len(prefix), 8 + n)
        metas = parse_header(prefix[8 : 8 + n], file, size, label=f"{self.ref}/{file}")
        self.keep_prefix(file, bytes(prefix[: 8 + n]), size)
        return metas

    def _header_prefix(self, file: str, n: int) -> tuple[bytes, int | None]:
        """The first ``n`` bytes of a safetensors file, or its whole header when a cache holds it."""
        known = self.known_prefix(file)
        if known is not None:
            data, size = known
            # A whole header (length prefix and that many bytes), else read from the source again.
            if len(data) >= 8 and len(data) == 8 + int.from_bytes(data[:8], "little"):
                return data, size
        return self._read_prefix(file, n)

    def known_prefix(self, file: str) -> tuple[bytes, int | None] | None:
        """A prefix of ``file`` (its header) kept from an earlier read, with the file size; None by default."""
        return None

    def keep_prefix(self, file: str, data: bytes, size: int | None) -> None:  # noqa: B027 - a no-op by default
        """Keep a header that parsed without fault (a source with a cache does)."""

    def read_ranges(self, ranges: Sequence[ByteRange], gap_bytes: int = 0) -> list[Buffer]:
        """Read ``(file, start, end_exclusive)`` ranges, concurrently; results in input order.

        Touching or overlapping ranges of one file are merged into one read first. ``gap_bytes``
        allows reading up to that many unrequested bytes in total to bridge the smallest gaps
        between ranges: fewer requests (Hub rate limits count requests) for a few more bytes.
        """
        for file, start, end in ranges:
            if start < 0 or end < start:
                raise ValueError(f"bad range {start}-{end} of {file}")
        merged = merge_ranges(ranges, gap_bytes)
        # Big spans (full reads) are split so that they too download over parallel connections.
        pieces = [p for span in merged for p in _split(span, self.split_bytes)]
        got = self._map(lambda r: self._read_one(*r) if r[2] > r[1] else b"", pieces)
        parts: dict[ByteRange, list[Buffer]] = {}
        for piece, blob in zip(pieces, got):
            parts.setdefault(containing(merged, *piece), []).append(blob)
        blobs = [join(parts.get(span, [b""])) for span in merged]
        index = {r: (blob, r[1]) for r, blob in zip(merged, blobs)}
        out = []
        for file, start, end in ranges:
            span = containing(merged, file, start, end)
            blob, base = index[span]
            # A range that is its whole span is passed on as it is: full reads move gigabytes.
            out.append(blob if (start, end) == (base, base + len(blob)) else blob[start - base : end - base])
        return out

    def close(self) -> None:  # noqa: B027 - a no-op unless a source holds something
        """Release files or connections (a no-op by default)."""

    def __enter__(self) -> WeightSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ref!r})"


def _split(span: ByteRange, size: int | None) -> list[ByteRange]:
    f, s, e = span
    if size is None or e - s <= size:
        return [span]
    return [(f, a, min(e, a + size)) for a in range(s, e, size)]


_SHARD_RE = re.compile(r"model-(\d{5})-of-(\d{5})\.safetensors")


def complete_shard_series(names: Iterable[str]) -> list[str] | None:
    """The standard shard files ``model-0000i-of-0000N.safetensors`` if all N are present, else None.

    >>> complete_shard_series(["model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors", "x"])
    ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']
    >>> complete_shard_series(["model-00001-of-00003.safetensors"]) is None
    True
    """
    found = {m.group(0): (int(m.group(1)), int(m.group(2))) for n in names if (m := _SHARD_RE.fullmatch(n))}
    totals = {total for _, total in found.values()}
    if len(totals) != 1:
        return None
    total = totals.pop()
    if sorted(i for i, _ in found.values()) != list(range(1, total + 1)):
        return None
    return sorted(found)


def load_json(raw: Buffer, where: str) -> object:
    """Decode a UTF-8 JSON file a source read; WeightFormatError naming ``where`` if it is not."""
    try:
        return as_data(load_json_limited(bytes(raw)))  # the Hub client's loader: nesting capped
    except ValueError as exc:  # not UTF-8, not JSON, nested too deep
        raise WeightFormatError(f"{where}: not valid JSON ({exc})") from None


def load_json_object(raw: Buffer, where: str) -> dict[str, Any]:
    """:func:`load_json`, and the value must be an object (config.json)."""
    obj = load_json(raw, where)
    if not isinstance(obj, dict):
        raise WeightFormatError(f"{where}: expected a JSON object")
    return obj


def parse_index(raw: Buffer, where: str) -> tuple[list[str], dict[str, str]]:
    """Validate ``model.safetensors.index.json``: return (shard files in order, weight_map).

    Shard names must be plain relative paths (no ``..``, no absolute paths): a hostile index must
    not make a local source read outside the model directory.

    >>> parse_index(b'{"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}', "x")
    (['s1.safetensors'], {'a': 's1.safetensors', 'b': 's1.safetensors'})
    """
    obj = load_json(raw, where)
    wm = obj.get("weight_map") if isinstance(obj, dict) else None
    if not isinstance(wm, dict) or not wm or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        raise WeightFormatError(f"{where}: no weight_map object of tensor name -> shard file")
    files: list[str] = []
    for shard in wm.values():
        parts = shard.replace("\\", "/").split("/")
        if shard.startswith(("/", "\\")) or ".." in parts or not shard.strip():
            raise WeightFormatError(f"{where}: shard name {shard!r} is not a relative file name")
        if shard not in files:
            files.append(shard)
    return files, dict(wm)


# --------------------------------------------------------------------------------------------
# Local directories


class LocalSource(WeightSource):
    """A model directory: config.json plus model.safetensors, or shards with an index json.

    >>> LocalSource("/no/such/dir")
    Traceback (most recent call last):
    provbot.detectors.errors.NotFoundError: local model directory /no/such/dir not found
    """

    def __init__(self, path: str | os.PathLike[str], ref: str | None = None) -> None:
        super().__init__(ref or str(path), concurrency=1)
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise NotFoundError(f"local model directory {path} not found")
        # Open shards, least recently used first: at most MAX_OPEN_FILES stay open (a checkpoint in
        # thousands of shards must not exhaust the process's descriptors); ``_busy`` counts readers.
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._busy: Counter[str] = Counter()
        self._files: tuple[list[str], dict[str, str] | None] | None = None

    def config(self) -> dict[str, Any]:
        p = self.path / "config.json"
        if not p.is_file():
            return {}
        return load_json_object(p.read_bytes(), str(p))

    def declared(self) -> Declared:
        return declared_from_folder(self.path)

    def _list_weight_files(self) -> tuple[list[str], dict[str, str] | None]:
        if self._files is None:
            index = self.path / INDEX_FILE
            if index.is_file():
                files, wm = parse_index(index.read_bytes(), str(index))
                for f in files:
                    if not (self.path / f).is_file():
                        raise NotFoundError(f"{self.path / f}: shard named in {INDEX_FILE} is missing")
                self._files = (files, wm)
            elif (self.path / SINGLE_FILE).is_file():
                self._files = ([SINGLE_FILE], None)
            else:
                found = sorted(p.name for p in self.path.glob("*.safetensors") if p.is_file())
                if not found:
                    raise NotFoundError(f"{self.path}: no {SINGLE_FILE}, {INDEX_FILE} or other .safetensors file")
                self._files = (found, None)
        return self._files

    @contextmanager
    def _fd(self, file: str) -> Iterator[int]:
        """The open descriptor of ``file``, kept open for the next read unless too many are open."""
        with self._lock:
            fd = self._fds.get(file)
            if fd is None:
                try:
                    fd = os.open(self.path / file, os.O_RDONLY)
                except FileNotFoundError:
                    raise NotFoundError(f"{self.path / file}: file not found") from None
                except PermissionError:
                    raise AccessDeniedError(f"{self.path / file}: permission denied") from None
                except OSError as exc:  # a folder where a file should be, too many open files...
                    raise SourceError(f"{self.path / file}: cannot open ({exc.strerror or exc})") from None
                self._fds[file] = fd
            self._fds.move_to_end(file)
            self._busy[file] += 1
        try:
            yield fd
        finally:
            with self._lock:
                self._busy[file] -= 1
                idle = [f for f in self._fds if not self._busy[f]]
                for f in idle[: max(0, len(self._fds) - MAX_OPEN_FILES)]:
                    os.close(self._fds.pop(f))

    def open_files(self) -> int:
        """Descriptors this source holds open now (at most ``MAX_OPEN_FILES`` between reads)."""
        with self._lock:
            return len(self._fds)

    def _read_prefix(self, file: str, n: int) -> tuple[bytes, int | None]:
        # Locally there is no round trip to save: read the length, then exactly the header, so that
        # bytes_read counts only what a scan needs (a bogus length is capped here, rejected later).
        with self._fd(file) as fd:
            size = os.fstat(fd).st_size
            first8 = os.pread(fd, 8, 0)
            want = 8 + min(int.from_bytes(first8, "little"), MAX_HEADER_BYTES) if len(first8) == 8 else 0
            rest = os.pread(fd, min(want, size) - len(first8), len(first8)) if want > len(first8) else b""
        self._count(len(first8) + len(rest), requests=2 if rest else 1)
        return first8 + rest, size

    def raw_prefix(self, file: str, n: int) -> tuple[bytes, int | None]:
        with self._fd(file) as fd:
            size = os.fstat(fd).st_size
            data = os.pread(fd, min(n, size), 0)
        self._count(len(data))
        return data, size

    def gguf_files(self) -> list[str]:
        """The folder's ``.gguf`` files, by name."""
        return sorted(p.name for p in self.path.glob("*.gguf") if p.is_file())

    def _read_one(self, file: str, start: int, end: int) -> Buffer:
        # Into a writable (and, when big, aligned) buffer: decoding views it without another copy.
        data = read_buffer(end - start)
        with self._fd(file) as fd:
            got = os.preadv(fd, [data], start) if len(data) else 0
        self._count(got)
        if got != end - start:
            raise WeightFormatError(f"{self.path / file}: file ends before byte {end} (truncated?)")
        return data

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def __del__(self) -> None:
        # Sources are often used without `with`; do not leak one descriptor per shard.
        if getattr(self, "_fds", None):
            try:
                self.close()
            except Exception:  # noqa: BLE001 - at interpreter exit the os module may be gone already
                pass


# --------------------------------------------------------------------------------------------
# Hub repos


class HubSource(WeightSource):
    """A Hub model repo, read with HTTP range requests through the Hub client.

    ``model_info`` gives the commit sha (every later read is pinned to it, and an answer from
    another commit is refused) and the file list; pass ``info=`` when it is already known to save
    that call. Faults, retries and rate limits are the client's (:mod:`provbot.detectors.hub`).
    The token is sent as a header and appears in no message or log.
    """

    # Full reads already keep several batches in flight per model; splitting is for bigger spans.
    split_bytes = 64 * 2**20

    def __init__(
        self,
        repo_id: str,
        revision: str | None = None,
        *,
        endpoint: str | None = None,
        token: str | SecretStr | None = None,
        concurrency: int = 16,
        ref: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        client: HubClient | None = None,
        info: ModelInfo | None = None,
        header_cache: HeaderCache | None = None,
    ) -> None:
        super().__init__(ref or (repo_id if revision is None else f"{repo_id}@{revision}"), concurrency)
        #: Headers and config.json by commit (default: the process's, see header_cache).
        self.header_cache = header_cache if header_cache is not None else default_header_cache()
        self.client = client or HubClient(endpoint, token, retry=retry, timeout_s=timeout_s)
        self.repo_id = repo_id
        self.endpoint = self.client.endpoint
        if info is None or info.sha is None or info.siblings is None:
            info = self.client.model_info(repo_id, revision)
            self._count(0)
        self.revision = revision
        self.sha: str = info.sha or revision or "main"
        self.siblings: set[str] = info.filenames
        self._declared = info.declared
        self._files: tuple[list[str], dict[str, str] | None] | None = None
        self._urls: dict[str, str] = {}

    # -- HTTP -------------------------------------------------------------------------------------
    def _url(self, file: str) -> str:
        url = self._urls.get(file)
        if url is None:  # made once per file: a scan reads each shard in tens of requests
            url = self._urls[file] = self.client.file_url(self.repo_id, file, revision=self.sha)
        return url

    def _get(
        self, file: str, start: int | None = None, end: int | None = None, exact: bool = True
    ) -> tuple[Buffer, int | None]:
        """GET a file or the range ``[start, end)`` of it; returns (bytes, file size if known).

        A 200 answer to a range request (server ignoring Range) is read only up to ``end`` and
        sliced. ``exact=False`` accepts a short answer (the file ends before ``end``).
        """
        headers = {}
        if start is not None and end is not None:
            headers["Range"] = f"bytes={start}-{end - 1}"  # HTTP ranges are inclusive
        where = f"{file} in repo {self.repo_id}@{self.sha[:12]} on {self.endpoint}"
        call = Call(f"reading {file}", self.repo_id, self.sha)

        def handle(response: httpx.Response) -> tuple[Buffer, int | None]:
            got, size, transferred = self._answer(response, start, end, where)
            self._count(transferred, requests=0)
            if got is None:
                raise Retry("answer for the wrong range")
            if start is not None and end is not None and exact and len(got) != end - start:
                raise WeightFormatError(f"{self.ref}/{file}: file ends before byte {end} (truncated?)")
            return got, size

        return self.client.transport.send_file(
            call,
            self._url(file),
            handle,
            accept=frozenset({200, 206, 416}),
            headers=headers,
            on_attempt=lambda: self._count(0),
        )

    def _answer(
        self, r: httpx.Response, start: int | None, end: int | None, where: str
    ) -> tuple[Buffer | None, int | None, int]:
        """(bytes, file size if known, bytes transferred) of one answer; bytes None for the wrong range."""
        commits = {c for h in (*r.history, r) if (c := h.headers.get("x-repo-commit"))}
        if commits - {self.sha}:
            # The repo moved on between model_info and this read: mixing commits would compare
            # tensors of two different models.
            raise BadAnswerError(f"{where}: the Hub answered from commit {sorted(commits)[0][:12]}, not the pinned one")
        status = r.status_code
        if status == 416:
            raise WeightFormatError(f"{where}: bytes {start}-{(end or 0) - 1} are past the end of the file")
        if status == 206:
            first, size = _content_range(r.headers.get("content-range", ""))
            if start is None or end is None or (first is not None and first != start):
                return None, size, 0
            body = _read_upto(r, end - start)  # a server sending more than asked is cut off
            return body, size, len(body)  # the buffer itself: full reads move gigabytes
        limit = MAX_JSON_BYTES + 1 if start is None or end is None else end
        # The rest of a whole-file answer to a range request is not needed: drop the connection.
        buf = _read_upto(r, limit)
        if start is None or end is None:
            if len(buf) > MAX_JSON_BYTES:
                raise WeightFormatError(f"{where}: larger than {MAX_JSON_BYTES} bytes, refusing to read it")
            return bytes(buf), len(buf), len(buf)
        size = len(buf) if len(buf) < limit else None
        return bytes(buf[start:end]), size, len(buf)

    # -- WeightSource -----------------------------------------------------------------------------
    def declared(self) -> Declared:
        return self._declared

    def config(self) -> dict[str, Any]:
        if "config.json" not in self.siblings:
            return {}
        key = self._key("config.json")
        hit = self.header_cache.get(key)
        if hit is not None:
            try:
                return load_json_object(hit[0], f"{self.ref}/config.json")
            except WeightFormatError:
                log.warning("%s: cached config.json is not valid JSON, reading it again", self.ref)
        raw, size = self._get("config.json")
        config = load_json_object(raw, f"{self.ref}/config.json")
        self.header_cache.put(key, bytes(raw), size)
        return config

    def _key(self, file: str) -> CacheKey:
        return CacheKey(self.endpoint, self.repo_id, self.sha, file)

    def known_prefix(self, file: str) -> tuple[bytes, int | None] | None:
        return self.header_cache.get(self._key(file))

    def keep_prefix(self, file: str, data: bytes, size: int | None) -> None:
        self.header_cache.put(self._key(file), data, size)

    def _list_weight_files(self) -> tuple[list[str], dict[str, str] | None]:
        if self._files is None:
            series = complete_shard_series(self.siblings)
            if series:
                # The shard headers already say where each tensor is; skipping the index saves
                # megabytes per scan on models with tens of thousands of tensors.
                self._files = (series, None)
            elif INDEX_FILE in self.siblings:
                raw, _ = self._get(INDEX_FILE)
                files, wm = parse_index(raw, f"{self.ref}/{INDEX_FILE}")
                for f in files:
                    if f not in self.siblings:
                        raise NotFoundError(f"{self.ref}: shard {f} named in {INDEX_FILE} is not in the repo")
                self._files = (files, wm)
            elif SINGLE_FILE in self.siblings:
                self._files = ([SINGLE_FILE], None)
            else:
                found = sorted(f for f in self.siblings if f.endswith(".safetensors") and "/" not in f)
                if not found:
                    raise NotFoundError(
                        f"repo {self.repo_id} on {self.endpoint} has no safetensors weights (pickled .bin files are never read)"
                    )
                self._files = (found, None)
        return self._files

    def _read_prefix(self, file: str, n: int) -> tuple[bytes, int | None]:
        try:
            got, size = self._get(file, 0, n, exact=False)
            return bytes(got), size  # a header prefix: at most HEADER_PREFIX_BYTES
        except WeightFormatError:
            # 416 on bytes=0-...: the file is empty.
            raise WeightFormatError(f"{self.ref}/{file}: empty file, not a safetensors file") from None

    def _read_one(self, file: str, start: int, end: int) -> Buffer:
        return self._get(file, start, end)[0]


def _read_upto(response: httpx.Response, limit: int) -> bytearray | memoryview:
    """The body, at most ``limit`` bytes, in a writable buffer (decoding views it without another copy).

    With a Content-Length within the limit (and no content encoding) the buffer is allocated once and
    filled in place: growing it chunk by chunk would copy (and page-fault) tens of megabytes again
    and again in full reads.
    """
    try:
        expected = int(response.headers.get("content-length", ""))
    except ValueError:
        expected = -1
    if 0 <= expected <= limit and response.headers.get("content-encoding", "identity") == "identity":
        buf = read_buffer(expected)  # aligned when big: see buffers
        view = memoryview(buf)
        pos = 0
        # Read to the end of the body, not just to its last byte: a response left unfinished
        # cannot go back to the connection pool, and every request would open a new connection.
        for chunk in response.iter_raw():
            n = min(len(chunk), expected - pos)
            view[pos : pos + n] = chunk[:n]
            pos += n
            if n < len(chunk):  # more than announced: cut off (that connection is dropped)
                break
        view.release()
        return buf if pos == expected else buf[:pos]
    buf = bytearray()
    for chunk in response.iter_bytes():
        buf += chunk
        if len(buf) >= limit:
            break
    del buf[limit:]
    return buf


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _content_range(value: str) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``Content-Range: bytes a-b/total``."""
    m = _CONTENT_RANGE.match(value.strip())
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))
