"""Where claimed jobs run: an in-process thread pool (the default) or Ray (``bot.executor = "ray"``).

An executor is anything with ``submit(fn) -> Future`` and ``shutdown(wait)``.

>>> ex = ThreadExecutor(1); ex.submit(lambda: 2).result(); ex.shutdown(True)
2
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from provbot.bot.service.queue.runs import Executor
from provbot.bot.settings import Settings


class ThreadExecutor:
    """In-process thread pool (the default)."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provbot-worker")

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        return self._pool.submit(fn)

    def shutdown(self, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def build_executor(settings: Settings, workers: int) -> Executor:
    """The executor ``bot.executor`` names: threads (default) or Ray (imported only when chosen)."""
    if settings.bot.executor == "ray":
        from provbot.bot.service.queue.ray_executor import RayExecutor

        return RayExecutor(address=settings.bot.ray_address, num_cpus=workers)
    return ThreadExecutor(workers)
