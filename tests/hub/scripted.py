"""A scripted HTTP server on loopback: answers the bytes, statuses and headers a test asks for.

For hostile or rare Hub answers the local Hub server does not produce (a 429 an hour long, a body
that is not JSON, a redirect loop, a server ignoring Range). Every request is recorded.

>>> with ScriptedServer() as srv:                                   # doctest: +SKIP
...     srv.script("/api/models/org/x", Answer(200, b"not json"))
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Script = Answer | Callable[[Seen], Answer]


class ScriptedServer:
    """``script(prefix, *answers)``: requests whose path starts with ``prefix`` get the answers in turn
    (the last one repeats). Unscripted paths answer 404."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._scripts: dict[str, list[Script]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                seen = Seen(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                server.requests.append(seen)
                answer = server._next(seen)
                self.send_response(answer.status)
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                if "content-length" not in {k.lower() for k in answer.headers}:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)

            do_GET = do_POST = do_HEAD = _answer  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A client dropping its kept-alive connection is normal here: no traceback on stderr.
        self._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def script(self, prefix: str, *answers: Script) -> None:
        self._scripts[prefix] = list(answers)

    def _next(self, seen: Seen) -> Answer:
        path = seen.path.split("?")[0]
        hits = [p for p in self._scripts if path.startswith(p)]
        if not hits:
            return Answer(404, b'{"error": "not scripted"}')
        queue = self._scripts[max(hits, key=len)]
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        return item(seen) if callable(item) else item

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
