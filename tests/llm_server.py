"""A real chat-completions server on loopback for tests: streams (SSE), JSON, errors, slow trickles.

`llm_server()` is a context manager yielding the base URL (".../v1") and the
`Script` that says what the next requests get; the `server` fixture in a test
module wraps it.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator


@dataclass
class Script:
    """What the fake server does with the next requests."""

    mode: str = "stream"  # stream | json | raw_json | status | slow_headers | trickle | raw_sse
    content: str = ""
    status: int = 200
    delay: float = 0.0
    raw: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def _chunks(content: str, size: int = 7) -> Iterator[str]:
    yield json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]})
    for i in range(0, len(content), size):
        yield json.dumps({"choices": [{"index": 0, "delta": {"content": content[i:i + size]}}]})
    yield json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})


class Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        s = self.server.script  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        s.requests.append(body)
        s.headers.append(dict(self.headers))
        if self.path.split("?")[0] != "/v1/chat/completions":
            self._send(404, "application/json", json.dumps({"error": {"message": "no such route"}}))
            return
        if s.mode == "status":
            self._send(s.status, "application/json", json.dumps({"error": {"message": "model overloaded"}}))
        elif s.mode == "json":
            self._send(200, "application/json",
                       json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": s.content}}]}))
        elif s.mode == "raw_json":  # `raw` as the body, JSON or not
            self._send(200, "application/json", s.raw)
        elif s.mode == "slow_headers":
            time.sleep(s.delay)
            self._send(200, "application/json", "{}")
        elif s.mode in ("stream", "trickle", "raw_sse"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            if s.mode == "raw_sse":
                self.wfile.write(s.raw.encode())
                return
            try:
                self.wfile.write(b": ping\n\n")
                for data in _chunks(s.content):
                    self.wfile.write(f"data: {data}\n\n".encode())
                    self.wfile.flush()
                    if s.mode == "trickle":
                        time.sleep(s.delay)
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

    def _send(self, status: int, kind: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextmanager
def llm_server() -> Iterator[tuple[str, Script]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    httpd.script = Script()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", httpd.script  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
