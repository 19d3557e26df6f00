"""The ASGI application: the Hub's HTTP API over a :class:`~provbot.bot.localhub.store.RepoStore`.

Routing is done on the raw (still percent-encoded) path, because the client encodes a revision
such as ``refs/pr/1`` as one segment (``refs%2Fpr%2F1``) that a decoded path would split.
Supported routes are listed in docs/localhub.md. Run it with uvicorn, or use
:class:`provbot.bot.localhub.server.LocalHub`, which does so in a background thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

import provbot.bot.localhub.tree as tree
from provbot.bot.localhub.faults import FaultInjector, ratelimit_headers
from provbot.bot.localhub.listing import list_models
from provbot.bot.localhub.models import RepoConfig, ServerOptions
from provbot.bot.localhub.quota import PLANS, QuotaWindows, bucket_of
from provbot.bot.localhub.ranges import RangeNotSatisfiable, parse_range
from provbot.bot.localhub.store import FileEntry, HubError, RepoStore, Revision, repo_not_found
from provbot.bot.localhub.webhooks import object_id

log = logging.getLogger(__name__)

# Files of a gated repo anyone may read, as on the Hub (the card and git attributes).
UNGATED_FILES = frozenset({"README.md", ".gitattributes"})
CHUNK = 1 << 20
SMALL_BODY = 4 << 20  # bodies up to this size are read whole and sent in one piece
# Bodies up to this size are read on the event loop when the page cache holds them (see
# _pread_cached): a thread hop costs more CPU than copying them.
INLINE_READ = 256 << 10
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux only
# Generated (virtual) bodies up to this size are computed on the event loop: a few value blocks
# cost less than a thread hop.
VIRTUAL_INLINE = 16 << 10


def _pread_exact(entry: FileEntry, start: int, length: int) -> bytes:
    if entry.virtual is not None:
        return entry.virtual.read(start, start + length)
    fd = os.open(entry.path, os.O_RDONLY)
    try:
        return os.pread(fd, length, start)
    finally:
        os.close(fd)


def _pread_cached(entry: FileEntry, start: int, length: int) -> bytes | None:
    """The bytes if the page cache holds all of them, else None: never waits for the disk.

    RWF_NOWAIT makes the kernel answer EAGAIN (or a short read) instead of blocking, so this is
    safe on the event loop; callers fall back to :func:`_pread_exact` in a worker thread.
    """
    if entry.virtual is not None:
        return entry.virtual.read(start, start + length) if length <= VIRTUAL_INLINE else None
    if _RWF_NOWAIT is None:
        return None
    buf = bytearray(length)
    try:
        fd = os.open(entry.path, os.O_RDONLY)
    except OSError:
        return None  # the thread path raises it
    try:
        n = os.preadv(fd, [buf], start, _RWF_NOWAIT)
    except OSError:  # EAGAIN: not cached; EOPNOTSUPP: a filesystem without nowait reads
        return None
    finally:
        os.close(fd)
    return bytes(buf) if n == length else None


def error_response(err: HubError) -> JSONResponse:
    """The Hub's error shape: JSON {"error": ...} plus X-Error-Code / X-Error-Message headers."""
    headers = dict(err.headers)
    if err.code:
        headers["X-Error-Code"] = err.code
    # Messages may echo user input (a revision name): keep the header ASCII and on one line.
    headers["X-Error-Message"] = " ".join(err.message.encode("ascii", "backslashreplace").decode().split())
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)


class LocalHubApp:
    """ASGI callable answering the Hub's routes; ``discussions`` is plugged in by the server."""

    def __init__(self, store: RepoStore, options: ServerOptions, faults: FaultInjector):
        self.store = store
        self.options = options
        self.faults = faults
        self.discussions: Any = None  # bot.localhub.discussions.DiscussionsApi, set by the server
        self.oauth: Any = None  # bot.localhub.oauth.OAuthProvider, set by the server
        self.requests = 0  # requests answered, for tests and benchmarks
        # Per-route counts, for tests and benchmarks: resolve calls, CDN reads, CDN reads with a token.
        self.resolves = 0
        self.cdn_reads = 0
        self.cdn_with_token = 0
        self._cdn_key = secrets.token_bytes(16)
        self.quota = QuotaWindows(options.quotas, options.window_s, time_scale=options.time_scale)

    def revoke_cdn_urls(self) -> None:
        """Every signed CDN URL given out so far stops working (403), as when signatures expire."""
        self._cdn_key = secrets.token_bytes(16)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to set up; acknowledge so uvicorn is happy
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        self.requests += 1
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        if self.options.latency_ms:
            await asyncio.sleep(self.options.latency_ms / 1000)
        rule = self.faults.take(request.method, unquote(path))
        if rule is not None:
            if rule.delay_s:
                await asyncio.sleep(rule.delay_s)
            if rule.status:
                headers = ratelimit_headers(rule.reset_s) if rule.status == 429 else {}
                return error_response(HubError(rule.status, None, f"injected fault {rule.status}", headers))
        bucket = bucket_of(unquote(path))
        limits: dict[str, str] = {}
        if bucket is not None:
            self.quota.quotas = self.options.quotas  # options may change on a running server
            self.quota.window_s = self.options.window_s
            self.quota.time_scale = self.options.time_scale
            allowed, limits = self.quota.take(bucket, *self._caller_quotas(request))
            if not allowed:
                return error_response(HubError(429, None, "You have exceeded the rate limit", limits))
        try:
            response = await self.route(request, [unquote(s) for s in path.split("/")[1:]])
        except HubError as err:
            response = error_response(err)
        except Exception:  # a server bug must still answer, in one line, and be logged
            log.exception("localhub: internal error on %s %s", request.method, path)
            response = error_response(HubError(500, None, "Internal Error"))
        response.headers.update(limits)
        return response

    def _caller_quotas(self, request: Request) -> tuple[str, dict[str, int] | None]:
        """Whose windows a request counts in, and their quotas (None: the server-wide ``quotas``)."""
        try:
            user = self.user(request) or ""
        except HubError:  # an unknown token: counted as anonymous (the route answers 401)
            user = ""
        if self.options.quotas or not self.options.rate_windows:
            return user, None
        return user, PLANS["pro" if user and user in self.options.pro_users else "free"]

    async def route(self, request: Request, seg: list[str]) -> Response:
        method = request.method
        if seg and seg[-1] == "" and len(seg) > 1:
            seg = seg[:-1]
        if seg[:2] == ["api", "models"]:
            if len(seg) == 2 and method == "GET":
                return await anyio.to_thread.run_sync(list_models, self, request)
            if len(seg) < 4:
                raise HubError(404, None, "Sorry, we can't find the page you are looking for.")
            repo_id = f"{seg[2]}/{seg[3]}"
            rest = seg[4:]
            if not rest and method == "GET":
                return await anyio.to_thread.run_sync(self.model_info, request, repo_id, None)
            if len(rest) == 2 and rest[0] == "revision" and method == "GET":
                return await anyio.to_thread.run_sync(self.model_info, request, repo_id, rest[1])
            if len(rest) >= 2 and rest[0] == "safetensors-metadata" and method == "GET":
                return await anyio.to_thread.run_sync(self.safetensors_metadata, request, repo_id, "/".join(rest[1:]))
            if rest and rest[0] in ("tree", "paths-info", "refs"):
                return await self.tree_routes(request, repo_id, rest)
            if rest and rest[0] == "discussions" and self.discussions is not None:
                return await self.discussions.handle(request, repo_id, rest[1:])
        elif len(seg) == 4 and seg[:2] == ["api", "organizations"] and seg[3] == "members" and method == "GET":
            members = self.options.orgs.get(seg[2])
            if members is None:
                raise HubError(404, None, "Organization not found")
            return JSONResponse([{"user": m, "fullname": m, "type": "user", "avatarUrl": ""} for m in members])
        elif seg and seg[0] == "oauth" and self.oauth is not None:
            return await self.oauth.handle(request, seg[1:])
        elif seg[:2] == ["api", "whoami-v2"] and method == "GET":
            user = self.user(request)
            if user is None:
                raise HubError(401, None, "Invalid credentials in Authorization header")
            return JSONResponse(
                {"type": "user", "id": object_id(user), "name": user, "fullname": user, "orgs": [], "auth": {}}
            )
        elif len(seg) >= 5 and seg[2] == "resolve" and seg[0] not in ("api", "datasets", "spaces"):
            if method in ("GET", "HEAD"):
                self.resolves += 1
                return await self.resolve(request, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        elif seg and seg[0] == "cdn" and len(seg) >= 5 and method in ("GET", "HEAD"):
            return await self.cdn(request, f"{seg[1]}/{seg[2]}", seg[3], "/".join(seg[4:]))
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    # -- authentication --------------------------------------------------------------------
    def user(self, request: Request) -> str | None:
        """The token's user; None without a token; 401 for a token this server does not know."""
        auth = request.headers.get("authorization")
        if not auth:
            return None
        scheme, _, token = auth.partition(" ")
        user = self.options.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return user

    def check_read(self, request: Request, repo_id: str) -> str | None:
        """Private repos: 401 without a token, 404 (as the Hub) for users who are not members."""
        return self._check_read(request, repo_id)[0]

    def _check_read(self, request: Request, repo_id: str) -> tuple[str | None, RepoConfig]:
        user = self.user(request)
        if not self.store.exists(repo_id):
            raise repo_not_found(repo_id)
        cfg = self.store.config(repo_id)
        if cfg.private:
            if user is None:
                raise repo_not_found(repo_id, 401)
            if not self._is_member(repo_id, user, cfg.members, default=True):
                raise repo_not_found(repo_id)
        return user, cfg

    def check_file(self, request: Request, repo_id: str, filename: str) -> None:
        """Gated repos: file downloads need a member's token (401 without one, 403 otherwise)."""
        user, cfg = self._check_read(request, repo_id)
        if cfg.gated and filename not in UNGATED_FILES:
            msg = f"Access to model {repo_id} is restricted and you are not in the authorized list."
            if user is None:
                raise HubError(401, "GatedRepo", f"Access to model {repo_id} is restricted. Please log in.")
            if not self._is_member(repo_id, user, cfg.members, default=False):
                raise HubError(403, "GatedRepo", msg)

    @staticmethod
    def _is_member(repo_id: str, user: str, members: list[str] | None, default: bool) -> bool:
        if user == repo_id.split("/")[0]:
            return True
        return default if members is None else user in members

    # -- model info ------------------------------------------------------------------------
    def model_info(self, request: Request, repo_id: str, revision: str | None) -> Response:
        self.check_read(request, repo_id)
        rev = self.store.resolve(repo_id, revision)
        blobs = request.query_params.get("blobs", "").lower() in ("1", "true")
        info = self.store.model_info(rev, blobs=blobs)
        expand = request.query_params.getlist("expand") + request.query_params.getlist("expand[]")
        if expand:
            info = {k: v for k, v in info.items() if k in expand or k in ("_id", "id")}
        return JSONResponse(info)

    def safetensors_metadata(self, request: Request, repo_id: str, filename: str) -> Response:
        """All shard headers of a sharded model on main in one answer: {"index": ..., "headers": ...}."""
        self.check_file(request, repo_id, filename)
        rev = self.store.resolve(repo_id, None)
        entry = self._entry(rev, filename)
        try:
            index = json.loads(self.store.read_small(entry))
            shards = sorted(set(index["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise HubError(400, None, f"{filename} is not a valid safetensors index") from None
        headers: dict[str, Any] = {}
        for shard in shards:
            header = self.store.header(self._entry(rev, shard))
            if header is None:
                raise HubError(400, None, f"{shard} is not a valid safetensors file")
            headers[shard] = header
        index.pop("weight_map", None)  # the Hub leaves it out: the headers repeat the tensor names
        return JSONResponse({"index": index, "headers": headers})

    async def tree_routes(self, request: Request, repo_id: str, rest: list[str]) -> Response:
        """``GET tree/{rev}[/{path}]``, ``POST paths-info/{rev}`` (form: paths, expand), ``GET refs``."""
        form: dict[str, list[str]] = {}
        if request.method == "POST":
            form = parse_qs((await request.body()).decode("utf-8", "replace"))

        def answer() -> Response:
            self.check_read(request, repo_id)
            if rest == ["refs"] and request.method == "GET":
                return JSONResponse(tree.refs(self.store, repo_id))
            if rest[0] == "tree" and len(rest) >= 2 and request.method == "GET":
                rev = self.store.resolve(repo_id, rest[1])
                recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
                return JSONResponse(tree.tree(self.store, rev, "/".join(rest[2:]), recursive))
            if rest[0] == "paths-info" and len(rest) == 2 and request.method == "POST":
                rev = self.store.resolve(repo_id, rest[1])
                return JSONResponse(tree.paths_info(self.store, rev, form.get("paths", [])))
            raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

        return await anyio.to_thread.run_sync(answer)

    @staticmethod
    def _entry(rev: Revision, filename: str) -> FileEntry:
        entry = rev.files.get(filename)
        if entry is None:
            raise HubError(404, "EntryNotFound", f"Entry not found: {filename}", {"X-Repo-Commit": rev.sha})
        return entry

    # -- files -----------------------------------------------------------------------------
    def _prepare(
        self, repo_id: str, revision: str, filename: str, cached: bool
    ) -> tuple[Revision, FileEntry, str] | None:
        """Revision, file and ETag; with ``cached``, from the store's caches only (None on a miss)."""
        rev = self.store.resolve_cached(repo_id, revision) if cached else self.store.resolve(repo_id, revision)
        if rev is None:
            return None
        entry = self._entry(rev, filename)
        etag = self.store.cached_hash(entry) if cached else self.store.content_hash(entry)
        return None if etag is None else (rev, entry, etag)

    async def resolve(self, request: Request, repo_id: str, revision: str, filename: str) -> Response:
        def prepare(cached: bool) -> tuple[Revision, FileEntry, str] | None:
            self.check_file(request, repo_id, filename)
            return self._prepare(repo_id, revision, filename, cached)

        # Cache hits cost a few stats: answered on the event loop. Misses walk or hash files: a thread.
        prepared = prepare(True)
        if prepared is None:
            prepared = await anyio.to_thread.run_sync(prepare, False)
        assert prepared is not None  # cached=False always answers or raises
        rev, entry, etag = prepared
        if self.options.redirect_resolve and entry.is_lfs:
            location = self._cdn_url(repo_id, rev.sha, filename)
            if self.options.cdn_host:  # another origin: clients must not send it the Hub token
                port = f":{request.url.port}" if request.url.port else ""
                location = f"{request.url.scheme}://{self.options.cdn_host}{port}{location}"
            headers = {
                "Location": location,
                "X-Repo-Commit": rev.sha,
                "X-Linked-Size": str(entry.size),
                "X-Linked-Etag": f'"{etag}"',
                "ETag": f'"{etag}"',
            }
            return Response(status_code=302, headers=headers)
        return await self._file_response(request, rev, entry, etag)

    def _cdn_url(self, repo_id: str, sha: str, filename: str) -> str:
        target = f"/cdn/{repo_id}/{sha}/{quote(filename)}"
        expires = int(time.time()) + self.options.cdn_expiry_s
        sig = hmac.new(self._cdn_key, f"{target}?{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"{target}?expires={expires}&sig={sig}"

    async def cdn(self, request: Request, repo_id: str, sha: str, filename: str) -> Response:
        """Redirect target: a signed URL (no token needed, like the Hub's CDN)."""
        target = f"/cdn/{repo_id}/{sha}/{quote(filename)}"
        self.cdn_reads += 1
        if request.headers.get("authorization"):
            self.cdn_with_token += 1
        expires = request.query_params.get("expires", "")
        sig = hmac.new(self._cdn_key, f"{target}?{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(sig, request.query_params.get("sig", "")):
            raise HubError(403, None, "Invalid or expired signature")
        if not expires.isdigit() or int(expires) < time.time():
            raise HubError(403, None, "Request has expired")

        prepared = self._prepare(repo_id, sha, filename, cached=True)
        if prepared is None:
            prepared = await anyio.to_thread.run_sync(self._prepare, repo_id, sha, filename, False)
        assert prepared is not None  # cached=False always answers or raises
        rev, entry, etag = prepared
        return await self._file_response(request, rev, entry, etag)

    async def _file_response(self, request: Request, rev: Revision, entry: FileEntry, etag: str) -> Response:
        size = entry.size
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": f'"{etag}"',
            "X-Repo-Commit": rev.sha,
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(entry.rfilename.rsplit('/', 1)[-1])}",
        }
        if entry.is_lfs:
            headers["X-Linked-Size"] = str(size)
            headers["X-Linked-Etag"] = f'"{etag}"'
        try:
            span = parse_range(request.headers.get("range"), size)
        except RangeNotSatisfiable:
            headers["Content-Range"] = f"bytes */{size}"
            err = HubError(416, None, "Requested Range Not Satisfiable", headers)
            return error_response(err)
        status = 200
        first, last = 0, size - 1
        if span is not None:
            first, last = span
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        headers["Content-Length"] = str(last - first + 1)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        length = last - first + 1
        if length <= SMALL_BODY and not self.options.bandwidth_mbps:
            # Small bodies (sampled weight reads) go out in one piece, without a thread hop per chunk.
            data = _pread_cached(entry, first, length) if length <= INLINE_READ else None
            if data is None:
                data = await anyio.to_thread.run_sync(_pread_exact, entry, first, length)
            await self._pace_link(len(data))
            return Response(data, status_code=status, headers=headers)
        return StreamingResponse(self._stream(entry, first, last + 1), status_code=status, headers=headers)

    async def _pace_link(self, nbytes: int) -> None:
        """Shared link cap: every body byte of every response queues on one virtual wire.

        All handlers run on the server's single event loop, so the clock needs no lock.
        """
        if not self.options.link_mbps:
            return
        now = time.monotonic()
        start = max(now, getattr(self, "_link_free_at", 0.0))
        self._link_free_at = start + nbytes / (self.options.link_mbps * 125_000)
        if self._link_free_at > now:
            await asyncio.sleep(self._link_free_at - now)

    async def _stream(self, entry: FileEntry, start: int, end: int) -> AsyncIterator[bytes]:
        """File bytes [start, end) read with pread in worker threads, paced to the bandwidth cap."""
        rate = self.options.bandwidth_mbps * 125_000 if self.options.bandwidth_mbps else None  # bytes/s
        chunk = CHUNK if rate is None else max(4096, min(CHUNK, int(rate / 20)))
        virtual = entry.virtual
        # Generated files are computed chunk by chunk, like reads of a stored one: never whole.
        fd = -1 if virtual is not None else await anyio.to_thread.run_sync(os.open, str(entry.path), os.O_RDONLY)
        began = time.monotonic()
        sent = 0
        try:
            pos = start
            while pos < end:
                n = min(chunk, end - pos)
                if virtual is not None:
                    data = await anyio.to_thread.run_sync(virtual.read, pos, pos + n)
                else:
                    data = await anyio.to_thread.run_sync(os.pread, fd, n, pos)
                if not data:  # file shrank under us: end the body short rather than hang
                    break
                pos += len(data)
                sent += len(data)
                await self._pace_link(len(data))
                yield data
                if rate is not None:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        finally:
            if fd >= 0:
                os.close(fd)
