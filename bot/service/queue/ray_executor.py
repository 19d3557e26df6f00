"""Run the bot's job bodies as Ray tasks, on this machine or across a Ray cluster.

The service process keeps everything that arbitrates: the pool claims jobs from the database queue
and its heartbeat renews their leases. Only the job body moves. For each claimed job a Ray task
rebuilds a :class:`~provbot.bot.service.context.BotContext` from the service's settings (cached per worker
process) and calls :func:`~provbot.bot.service.queue.runs.run_claimed` with the pool's owner id, so completing
or failing the job stays conditional on the lease the service holds. The database must therefore be
shared: a SQLite file on one machine, PostgreSQL across machines.

Ray never retries a task itself (``max_retries=0``): the queue's rules decide. If a task dies with
its worker process, the service records the failure at once (``retry=True``, same attempt count as
a crash); a service that dies too leaves the lease to expire, as with threads.

>>> ex = RayExecutor(num_cpus=2)   # nothing starts until the first job
>>> ex.started
False
>>> ex.shutdown(True)
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from provbot.bot.db.jobs import JobView
from provbot.bot.service.context import BotContext
from provbot.bot.service.queue.runs import ClaimedRun, Handler, run_claimed
from provbot.bot.settings import Settings
from provbot.detectors.errors import ConfigError, ProvbotError

log = logging.getLogger(__name__)


class RayExecutorError(ProvbotError):
    """Ray could not run a job (not installed, cannot start or join, a callable that cannot travel)."""


class RanOn(BaseModel):
    """Where a job body ran; added to the job's result as ``ran_on``."""

    executor: str = "ray"
    host: str
    pid: int
    node_id: str | None = None


def _cluster_endpoint(address: str) -> tuple[str, int] | None:
    """``host:port`` of a cluster address, to probe before Ray waits minutes on a dead one.

    >>> _cluster_endpoint("ray://head:10001"), _cluster_endpoint("auto")
    (('head', 10001), None)
    """
    rest = address.removeprefix("ray://")
    if rest in ("auto", "local"):
        return None
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayExecutorError(f"bad bot.ray_address {address!r} (auto, host:port or ray://host:port)")
    return host, int(port)


def _probe(address: str, timeout: float = 5.0) -> None:
    endpoint = _cluster_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as exc:
        raise RayExecutorError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or type(exc).__name__}"
        ) from None


def private_token_file(path: Path | None = None) -> Path:
    """Ray's cluster token file, readable by its owner only.

    Ray 2.60 keeps the token that guards a cluster in ``~/.ray/auth_token`` and, when it creates the
    file itself, leaves it readable by every user of the machine. The executor creates it first
    (mode 0600, in a 0700 folder) and tightens an existing one, so Ray finds and uses a private file.
    """
    path = path or Path.home() / ".ray" / "auth_token"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("Ray's token file %s was readable by other users; now it is readable by its owner only", path)
        return path
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))  # the format Ray generates: 256 random bits as hex
    return path


def _ray() -> Any:
    # Ray reads this when it starts; no usage reports leave the machine unless someone opts in.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:  # the optional dependency
        raise ConfigError("bot.executor = 'ray' needs Ray: pip install 'provbot[ray]' (ray>=2.60)") from None
    return ray


# -- inside the Ray worker process ---------------------------------------------------------------

# One context per settings object per worker process: engines and HTTP clients are reused by every
# task that lands in this process, instead of being rebuilt per job.
_CONTEXTS: dict[str, BotContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def _worker_context(key: str, settings: Settings) -> BotContext:
    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get(key)
        if ctx is None:
            from provbot.bot.service.redact import install_log_redaction

            # The service already migrated the shared database; a second migration from every
            # worker would only race for SQLite's write lock.
            ctx = BotContext.build(settings, migrate=False)
            install_log_redaction(ctx.redactor)  # the worker's own logs get the service's scrubbing
            _CONTEXTS[key] = ctx
        return ctx


def _where() -> RanOn:
    node_id = None
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker (direct calls in tests): no node id
        pass
    return RanOn(host=socket.gethostname(), pid=os.getpid(), node_id=node_id)


def _traced(handler: Handler, ctx: BotContext, job: JobView) -> dict[str, Any]:
    """Run a handler and say where it ran, so the job's stored result shows the machine and process."""
    result = dict(handler(ctx, job) or {})
    result["ran_on"] = _where().model_dump()
    return result


def run_job_remote(key: str, settings: Settings, handlers: dict[str, Handler], job: JobView, owner: str) -> str:
    """The Ray task's body: a context from ``settings``, then the pool's own :func:`run_claimed`."""
    ctx = _worker_context(key, settings)
    traced = {kind: partial(_traced, h) for kind, h in handlers.items()}
    return run_claimed(ctx, traced, job, owner)


def _call(fn: Callable[[], Any]) -> Any:
    return fn()


# -- in the service process ----------------------------------------------------------------------


class RayExecutor:
    """An :class:`~provbot.bot.service.workers.Executor` whose jobs run as Ray tasks.

    ``address``: None starts a private local Ray (``num_cpus`` CPUs, no dashboard, session files
    under ``temp_dir``); ``"auto"`` or ``"ray://head:10001"`` joins a cluster whose nodes have
    provbot installed and reach the same database and Hub. An already initialised Ray in this
    process is used as it is (and left running at shutdown).

    Jobs the pool submits (:class:`ClaimedRun`) travel as (settings, handlers, job, owner); any other
    callable travels whole, so it must pickle.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        temp_dir: str | Path | None = None,
        task_cpus: float = 1.0,
        ray_init: dict[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.temp_dir = str(temp_dir) if temp_dir is not None else None
        self.task_cpus = task_cpus
        self.ray_init = dict(ray_init or {})
        self._lock = threading.Lock()
        self._ray: Any = None
        self._owns_runtime = False
        self._remote_job: Any = None
        self._remote_call: Any = None
        self._settings_refs: dict[int, tuple[Settings, str, Any]] = {}
        self._pending: dict[str, tuple[Any, Future[Any]]] = {}
        self._closed = False

    @property
    def started(self) -> bool:
        return self._ray is not None

    def start(self) -> RayExecutor:
        """Start (or join) Ray now rather than at the first job; idempotent."""
        with self._lock:
            if self._closed:
                raise RayExecutorError("the Ray executor was shut down")
            if self._ray is not None:
                return self
            ray = _ray()
            if not ray.is_initialized() and self.address is None:
                private_token_file()
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {
                    "include_dashboard": False,
                    "log_to_driver": False,
                    "configure_logging": False,
                    **self.ray_init,
                }
                if self.address is None:
                    kwargs["num_cpus"] = self.num_cpus
                    if self.temp_dir is not None:
                        kwargs["_temp_dir"] = self.temp_dir
                else:
                    _probe(self.address)
                try:
                    ray.init(address=self.address, **kwargs)
                except Exception as exc:  # no cluster at the address, ports taken, ...
                    where = self.address or "a local Ray"
                    raise RayExecutorError(
                        f"cannot start or join {where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    ) from exc
                self._owns_runtime = True
            # The queue decides about retries; Ray must not rerun a job body on its own.
            self._remote_job = ray.remote(max_retries=0, retry_exceptions=False, num_cpus=self.task_cpus)(
                run_job_remote
            )
            self._remote_call = ray.remote(max_retries=0, retry_exceptions=False, num_cpus=self.task_cpus)(_call)
            self._ray = ray
            log.info("ray executor ready (%s)", self.address or f"local, {self.num_cpus or 'all'} CPUs")
            return self

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        self.start()
        try:
            if isinstance(fn, ClaimedRun):
                key, settings_ref = self._settings_ref(fn.ctx.settings)
                ref = self._remote_job.remote(key, settings_ref, fn.handlers, fn.job, fn.owner)
            else:
                ref = self._remote_call.remote(fn)
        except TypeError as exc:  # Ray's message for a callable or argument that cannot be pickled
            raise RayExecutorError(f"cannot send the job to Ray: {str(exc).splitlines()[0]}") from exc
        outer: Future[Any] = Future()
        token = uuid.uuid4().hex
        with self._lock:
            self._pending[token] = (ref, outer)
        ref.future().add_done_callback(lambda inner: self._settle(token, fn, inner, outer))
        return outer

    def _settings_ref(self, settings: Settings) -> tuple[str, Any]:
        # One copy of the settings in Ray's object store per settings object, not one per job.
        with self._lock:
            entry = self._settings_refs.get(id(settings))
            if entry is None or entry[0] is not settings:
                entry = (settings, uuid.uuid4().hex, self._ray.put(settings))
                self._settings_refs[id(settings)] = entry
            return entry[1], entry[2]

    def _settle(self, token: str, fn: Callable[[], Any], inner: Future[Any], outer: Future[Any]) -> None:
        with self._lock:
            self._pending.pop(token, None)
        exc = inner.exception()
        if exc is None:
            outer.set_result(inner.result())
            return
        if not isinstance(fn, ClaimedRun):
            outer.set_exception(exc)
            return
        # The task died (worker process killed, node lost, cancelled): run_claimed never got to
        # record anything. Record it now, under the lease this service still holds, so the job
        # is retried by the queue's rules without waiting for the lease to run out.
        message = fn.ctx.redactor.text(
            f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )[:500]
        try:
            state = fn.ctx.queue.fail(fn.job.id, fn.owner, message, retry=True)
            fn.ctx.metrics.jobs.labels(kind=fn.job.kind, outcome=state or "lost").inc()
            fn.ctx.audit.record(
                "error",
                repo=fn.job.payload.get("repo"),
                message=f"{fn.job.kind} job {fn.job.id}: {message}",
                data={"job_id": fn.job.id, "attempt": fn.job.attempts, "state": state, "retry": True},
            )
        except Exception:  # the lease will expire instead; nothing is lost
            log.exception("recording the failure of job %s failed", fn.job.id)
            state = None
        log.warning("job %s (%s) attempt %s: %s -> %s", fn.job.id, fn.job.kind, fn.job.attempts, message, state)
        outer.set_result(state or "lost")

    def shutdown(self, wait: bool) -> None:
        """Wait for (or cancel) the jobs in flight, then stop Ray if this executor started it."""
        with self._lock:
            self._closed = True
            pending = list(self._pending.values())
        ray = self._ray
        if ray is None:
            return
        if wait:
            for _ref, outer in pending:
                try:
                    outer.result()
                except Exception:  # already recorded by _settle
                    pass
        else:
            for ref, _outer in pending:
                try:
                    ray.cancel(ref)  # a cancelled job is recorded as failed-and-retried by _settle
                except Exception:
                    log.debug("cancel failed", exc_info=True)
        with self._lock:
            self._settings_refs.clear()
            self._ray = None
        if self._owns_runtime:
            ray.shutdown()
            self._owns_runtime = False
