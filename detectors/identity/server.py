"""A small OpenAI-compatible chat-completions server for one local model (stream off), on loopback.

It exists to test the ``openai`` backend for real and to demo the detector against an "API-only"
model; it is not a production inference server. :class:`Faults` injects delays, 429 and 5xx answers.

>>> from provbot.detectors.identity.backends.local import LocalBackend                     # doctest: +SKIP
>>> server = ChatServer(LocalBackend.open("tests/identity/fixtures/rio-merge"))   # doctest: +SKIP
>>> with server.running() as url:                                                  # doctest: +SKIP
...     httpx.post(url + "/v1/chat/completions", json={"model": "rio", "messages": [...]})
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from provbot.detectors.identity.backends.base import Backend
from provbot.detectors.identity.prompts import SamplingSettings


class ChatMessage(BaseModel):
    role: str = Field(pattern="^(system|user|assistant)$")
    content: str = Field(max_length=20_000)


class ChatRequest(BaseModel):
    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=2048)
    seed: int | None = None
    stream: bool = False
    n: int = Field(1, ge=1, le=1)


@dataclass
class Faults:
    """Faults for the next requests, consumed in order: ``("status", 503)``, ``("status", 429)``, ``("delay", 2.0)``.

    ``retry_after`` is sent with 429 answers.
    """

    queue: list[tuple[str, float]] = field(default_factory=list)
    retry_after: float = 0.0
    seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, value: float, times: int = 1) -> None:
        with self.lock:
            self.queue.extend([(kind, value)] * times)

    def take(self) -> tuple[str, float] | None:
        with self.lock:
            self.seen += 1
            return self.queue.pop(0) if self.queue else None


class ChatServer:
    """Serves ``backend`` at ``/v1/chat/completions`` and ``/v1/models``; generation is serialised.

    With ``api_key`` set, requests must carry ``Authorization: Bearer <api_key>`` (401 otherwise).
    """

    def __init__(self, backend: Backend, model_name: str | None = None, api_key: str | None = None) -> None:
        self.backend = backend
        self.model_name = model_name or backend.info().model
        self.api_key = api_key
        self.faults = Faults()
        self._gen_lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": self.model_name, "object": "model"}]})

    async def _chat(self, request: Request) -> JSONResponse:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        fault = self.faults.take()
        if fault is not None:
            kind, value = fault
            if kind == "delay":
                await asyncio.sleep(value)
            elif kind == "status":
                headers = {"retry-after": str(self.faults.retry_after)} if int(value) == 429 else {}
                return JSONResponse(
                    {"error": {"message": "injected fault", "code": int(value)}},
                    status_code=int(value),
                    headers=headers,
                )
            elif kind == "garbage":
                return JSONResponse({"not": "chat-completions"})
        try:
            req = ChatRequest.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            return JSONResponse({"error": {"message": f"bad request: {str(exc).splitlines()[0]}"}}, status_code=400)
        if req.stream:
            return JSONResponse({"error": {"message": "streaming is not supported"}}, status_code=400)
        sampling = SamplingSettings(temperature=req.temperature, top_p=req.top_p, max_tokens=req.max_tokens)
        messages = [m.model_dump() for m in req.messages]
        text = await asyncio.to_thread(self._generate, messages, sampling, req.seed or 0)
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            }
        )

    def _generate(self, messages: list[dict[str, str]], sampling: SamplingSettings, seed: int) -> str:
        with self._gen_lock:  # one generate at a time: torch seeding is process-wide
            return self.backend.generate([messages], sampling, seed)[0] or ""

    @contextlib.contextmanager
    def running(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Run on a background thread; yields the base URL (``http://127.0.0.1:PORT``)."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("chat server did not start")
            time.sleep(0.02)
        try:
            yield f"http://{host}:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()

    def serve_forever(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        """Run in the foreground (the ``provbot identity-serve`` command)."""
        import uvicorn

        uvicorn.run(self.app, host=host, port=port, log_level="info", lifespan="off")
