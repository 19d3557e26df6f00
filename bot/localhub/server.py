"""Run the local Hub in a background thread, and manage its repos and faults from Python.

>>> import tempfile
>>> from huggingface_hub import HfApi
>>> with LocalHub(tempfile.mkdtemp()) as hub:
...     sha = hub.add_repo("acme/tiny", {"config.json": '{"model_type": "llama"}'})
...     HfApi(endpoint=hub.url).model_info("acme/tiny").sha == sha
True
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from provbot.bot.localhub.app import LocalHubApp
from provbot.bot.localhub.discussions import DiscussionsApi
from provbot.bot.localhub.faults import FaultInjector
from provbot.bot.localhub.models import FaultRule, RepoConfig, ServerOptions, WebhookTarget
from provbot.bot.localhub.oauth import OAuthApp, OAuthProvider
from provbot.bot.localhub.store import CONFIG_FILE, DEFAULT_REVISION, REV_RE, HubError, RepoStore, touch_unique
from provbot.bot.localhub.webhooks import WebhookSender
from provbot.detectors.errors import ConfigError, ProvbotError

FileSource = bytes | str | Path


class LocalHubError(ProvbotError):
    """The local Hub could not start, or a repo could not be written."""


class LocalHub:
    """A local Hub server on loopback: ``.url``, ``.root``, repo helpers and fault injection."""

    def __init__(
        self,
        root: Path | str,
        options: ServerOptions | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.options = options or ServerOptions()
        self.host = host
        self.port = port
        self.store = RepoStore(self.root)
        self.faults = FaultInjector()
        self.app = LocalHubApp(self.store, self.options, self.faults)
        self.webhooks = WebhookSender(self.options)
        self.app.discussions = DiscussionsApi(self.app, self.webhooks)
        self.app.oauth = OAuthProvider(self.options)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> LocalHub:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by accepted sockets: without it every response pays a ~40 ms delayed-ACK stall.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise LocalHubError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,  # a client that stopped reading a stream must not block stop()
            http=_http_protocol(),
            proxy_headers=False,  # nothing fronts this server: no X-Forwarded-* to scan on every request
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="localhub", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise LocalHubError(f"local Hub did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self.webhooks.close()
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- repos -----------------------------------------------------------------------------
    def _base(self, repo_id: str, must_exist: bool = False) -> Path:
        """The repo's main folder; LocalHubError for a malformed id (or a missing repo)."""
        try:
            base = self.store.repo_dir(repo_id)
        except HubError:
            raise LocalHubError(f"invalid repo id for the local Hub: {repo_id!r} (expected org/name)") from None
        if must_exist and not base.is_dir():
            raise LocalHubError(f"no such repo on the local Hub: {repo_id}")
        return base

    def _folder(self, repo_id: str, revision: str) -> Path:
        base = self._base(repo_id)
        if revision == DEFAULT_REVISION:
            return base
        if not REV_RE.match(revision):
            raise ConfigError(f"invalid revision name for the local Hub: {revision!r}")
        return base.parent / f"{base.name}@{revision}"

    def add_repo(
        self,
        repo_id: str,
        files: Path | str | Mapping[str, FileSource],
        *,
        revision: str = DEFAULT_REVISION,
        config: RepoConfig | Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """Create (or replace) a repo revision from a folder or {path: bytes|str|Path}; returns its sha.

        ``config`` sets private/gated/members/downloads/likes (``.localhub.json``).
        """
        folder = self._folder(repo_id, revision)
        fresh = not self.store.exists(repo_id)
        if fresh and revision != DEFAULT_REVISION:
            raise LocalHubError(f"add the main revision of {repo_id} before revision {revision!r}")
        new_cfg = self._coerce_config(config, repo_id) if config is not None else None  # validate first
        old_sha = self.store.resolve(repo_id, revision).sha if folder.is_dir() else None
        if isinstance(files, (str, Path)):
            src = Path(files)
            if not src.is_dir():
                raise LocalHubError(f"not a directory: {src}")
            items: dict[str, FileSource] = {
                p.relative_to(src).as_posix(): p
                for p in sorted(src.rglob("*"))
                if p.is_file() and ".git" not in p.relative_to(src).parts
            }
        else:
            items = dict(files)
        self._check_items(folder, items)  # everything is validated before the disk is touched
        # Build the new revision aside (a dot-folder that discovery ignores), then swap it in, so
        # a failure half-way never leaves a repo with half its files.
        staging = folder.parent / ".localhub" / f"staging-{folder.name}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for rel, content in items.items():
                self._put(staging, rel, content)
            old_cfg = self.store.config(repo_id) if not fresh and revision == DEFAULT_REVISION else None
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.store.invalidate(repo_id)  # the server's cached listing of this repo is stale now
        if revision == DEFAULT_REVISION:
            # Replacing files keeps the repo's settings unless new ones are given.
            cfg = new_cfg or (old_cfg.model_copy() if old_cfg else RepoConfig())
            now = datetime.now(UTC)
            if old_cfg is not None and config is None:
                cfg.last_modified = None  # the files changed now
            if created_at is not None:
                cfg.created_at = created_at
            if cfg.created_at is None:
                cfg.created_at = created_at or (old_cfg.created_at if old_cfg else None) or now
            if cfg.last_modified is None:
                cfg.last_modified = cfg.created_at if fresh else now
            self._write_config(repo_id, cfg)
        sha = self.store.resolve(repo_id, revision).sha
        self._content_event(repo_id, revision, sha, "create" if fresh else "update", old_sha)
        return sha

    def update_repo(
        self,
        repo_id: str,
        files: Mapping[str, FileSource] | None = None,
        *,
        delete: list[str] | None = None,
        revision: str = DEFAULT_REVISION,
        last_modified: datetime | None = None,
    ) -> str:
        """Write or delete files in an existing revision, bump lastModified; returns the new sha."""
        folder = self._folder(repo_id, revision)
        if not folder.is_dir():
            raise LocalHubError(f"no such repo revision on the local Hub: {repo_id}@{revision}")
        old_sha = self.store.resolve(repo_id, revision).sha
        self._check_items(folder, dict(files or {}))
        for rel in delete or []:
            self._safe_path(folder, rel)
        try:
            for rel, content in (files or {}).items():
                self._put(folder, rel, content)
            for rel in delete or []:
                target = self._safe_path(folder, rel)
                if target.is_file():
                    target.unlink()
        finally:
            self.store.invalidate(repo_id)  # files rewritten in place keep their folder's mtime
        cfg = self.store.config(repo_id)
        cfg.last_modified = last_modified or datetime.now(UTC)
        self._write_config(repo_id, cfg)
        sha = self.store.resolve(repo_id, revision).sha
        self._content_event(repo_id, revision, sha, "update", old_sha)
        return sha

    def set_repo_config(self, repo_id: str, **fields: Any) -> RepoConfig:
        """Change .localhub.json fields (private=True, gated="auto", members=[...], likes=3, ...)."""
        self._base(repo_id, must_exist=True)
        try:
            cfg = RepoConfig.model_validate({**self.store.config(repo_id).model_dump(), **fields})
        except ValidationError as exc:
            raise ConfigError(f"invalid repo setting: {_first_error(exc)}") from None
        self._write_config(repo_id, cfg)
        return cfg

    def delete_repo(self, repo_id: str) -> None:
        base = self._base(repo_id)
        for folder in [base, *base.parent.glob(f"{base.name}@*")]:
            shutil.rmtree(folder, ignore_errors=True)
        self.store.invalidate(repo_id)
        self.app.discussions.store.delete(repo_id)

    def sha(self, repo_id: str, revision: str = DEFAULT_REVISION) -> str:
        """The current commit sha of a revision."""
        self._base(repo_id, must_exist=True)
        try:
            return self.store.resolve(repo_id, revision).sha
        except HubError as err:
            raise LocalHubError(f"{repo_id}@{revision}: {err.message}") from None

    def _check_items(self, folder: Path, items: Mapping[str, FileSource]) -> None:
        for rel, content in items.items():
            self._safe_path(folder, rel)
            if not isinstance(content, (bytes, bytearray, memoryview, str, Path)):
                raise LocalHubError(f"file {rel!r}: expected bytes, str or Path, got {type(content).__name__}")

    @staticmethod
    def _safe_path(folder: Path, rel: str) -> Path:
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts or parts[0].startswith(".localhub"):
            raise LocalHubError(f"invalid file path for a repo: {rel!r}")
        return folder / rel

    def _put(self, folder: Path, rel: str, content: FileSource) -> None:
        target = self._safe_path(folder, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()  # never write through a hard link into someone else's file
        if isinstance(content, Path):
            try:
                os.link(content, target)  # big weight files: no copy when on the same filesystem
                return  # keeps its own inode and mtime, which identify it in the commit sha
            except OSError:
                shutil.copyfile(content, target)
        elif isinstance(content, str):
            target.write_text(content)
        else:
            target.write_bytes(bytes(content))
        touch_unique(target)

    @staticmethod
    def _coerce_config(config: RepoConfig | Mapping[str, Any], repo_id: str) -> RepoConfig:
        if isinstance(config, RepoConfig):
            return config.model_copy()
        try:
            return RepoConfig.model_validate(dict(config))
        except ValidationError as exc:
            raise ConfigError(f"invalid repo setting: {_first_error(exc)}") from None

    def _write_config(self, repo_id: str, cfg: RepoConfig) -> None:
        path = self.store.repo_dir(repo_id) / CONFIG_FILE
        data = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        touch_unique(tmp)
        os.replace(tmp, path)
        self.store.invalidate(repo_id)

    def _content_event(self, repo_id: str, revision: str, sha: str, action: str, old_sha: str | None) -> None:
        private = self.store.config(repo_id).private
        self.webhooks.repo_content(repo_id, private, revision, sha, action, old_sha)

    # -- faults and shaping ----------------------------------------------------------------
    def inject(
        self,
        prefix: str = "/",
        status: int = 500,
        count: int = 1,
        delay_s: float = 0.0,
        methods: list[str] | None = None,
        reset_s: int = 1,
    ) -> None:
        """The next ``count`` requests under ``prefix`` answer ``status`` (0: normal) after ``delay_s``."""
        self.faults.add(
            FaultRule(prefix=prefix, status=status, count=count, delay_s=delay_s, methods=methods, reset_s=reset_s)
        )

    def rate_limit(self, prefix: str = "/", count: int = 1, reset_s: int = 1) -> None:
        """The next ``count`` requests under ``prefix`` answer 429 with the Hub's RateLimit headers."""
        self.inject(prefix, 429, count, reset_s=reset_s)

    def slow(self, prefix: str = "/", delay_s: float = 1.0, count: int = 1) -> None:
        """The next ``count`` requests under ``prefix`` wait ``delay_s`` before answering normally."""
        self.inject(prefix, 0, count, delay_s=delay_s)

    def clear_faults(self) -> None:
        self.faults.clear()

    def shape(
        self, latency_ms: float = 0.0, bandwidth_mbps: float | None = None, link_mbps: float | None = None
    ) -> None:
        """Per-request latency, a per-response bandwidth cap and a cap shared by all responses (None: unlimited)."""
        self.options.latency_ms = latency_ms
        self.options.bandwidth_mbps = bandwidth_mbps
        self.options.link_mbps = link_mbps

    def add_virtual(self, source: Path | str) -> list[str]:
        """Serve the virtual repos of a spec file, or of every spec in a folder; returns their ids.

        Raises :class:`~provbot.bot.localhub.virtual.specfile.SpecError` (one line) for a bad spec.
        """
        from provbot.bot.localhub.virtual.repo import build_family
        from provbot.bot.localhub.virtual.specfile import load_folder, load_spec

        path = Path(source)
        specs = load_folder(path) if path.is_dir() else {path: load_spec(path)}
        added: list[str] = []
        for spec_path, spec in specs.items():
            mtime_ns = spec_path.stat().st_mtime_ns
            for repo_id, repo in build_family(spec).items():
                self.store.add_virtual(repo_id, repo.sha, repo.files, mtime_ns)
                added.append(repo_id)
        return added

    def add_token(self, token: str, user: str) -> None:
        self.options.tokens[token] = user

    def add_org(self, name: str, members: list[str]) -> None:
        """An organisation and its members (``GET /api/organizations/{name}/members``)."""
        self.options.orgs[name] = list(members)

    def add_oauth_app(
        self, client_id: str, client_secret: str, redirect_uris: list[str], scopes: list[str] | None = None
    ) -> OAuthApp:
        """Register an OAuth app (``/oauth/*``); users sign in as the owners of ``add_token`` tokens."""
        try:
            app = OAuthApp.model_validate(
                {
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "redirect_uris": redirect_uris,
                    **({"scopes": scopes} if scopes is not None else {}),
                }
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid OAuth app: {_first_error(exc)}") from None
        return self.app.oauth.register(app)

    def add_webhook(self, url: str, secret: str | None = None) -> WebhookTarget:
        target = WebhookTarget(url=url, secret=secret, id=f"localhub-{len(self.options.webhooks) + 1}")
        self.options.webhooks.append(target)
        return target

    @property
    def request_count(self) -> int:
        return self.app.requests


def _http_protocol() -> str:
    """uvicorn's C HTTP parser (httptools, a dependency) when importable, else the pure-Python h11.

    h11 costs the server ~0.3 ms of CPU per request, which on a small machine competes with the
    client being measured (bench/scan_bench.py makes thousands of small ranged GETs).
    """
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def running_hub(root: Path | str, **options: Any) -> LocalHub:
    """A started LocalHub for demos and benchmarks; use it as a context manager.

    >>> import tempfile
    >>> with running_hub(tempfile.mkdtemp(), latency_ms=5) as hub:
    ...     hub.url.startswith("http://127.0.0.1:")
    True
    """
    host = options.pop("host", "127.0.0.1")
    port = options.pop("port", 0)
    return LocalHub(root, ServerOptions(**options), host=host, port=port).start()


def _first_error(exc: ValidationError) -> str:
    """The first error of ``exc``, as ``(location): message``."""
    first = exc.errors()[0]
    return f"{first['loc']}: {first['msg']}"
