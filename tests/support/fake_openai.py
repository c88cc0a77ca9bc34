"""A loopback fake of the OpenAI and Anthropic HTTP APIs, for tests that drive the real ``openai``
and ``anthropic`` SDKs (and so the httpx2/httpcore2 pools they build) without the network.

It owns the answers the SDKs parse (``POST /v1/chat/completions``: a ChatCompletion;
``POST /v1/messages``: an Anthropic Message; anything else: a 404 in OpenAI's error shape) and
the server's side of the counts poolscope is held against: TCP connections accepted, requests
answered, and requests in flight (now and at most). HTTP/1.1 with keep-alive, on 127.0.0.1 and
an ephemeral port.

    with FakeOpenAI(delay=0.2) as api:
        with openai.OpenAI(api_key="x", base_url=api.url, max_retries=0) as client:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert (api.requests, api.connections) == (1, 1)

``api.url`` ends in ``/v1`` (OpenAI's ``base_url``); ``api.anthropic_url`` has no path
(Anthropic's ``base_url``: its client adds ``/v1/messages``). ``delay`` (seconds, also settable
while serving) answers each request that late, so concurrent callers hold their connections and
a small pool makes the rest wait. ``keepalive`` closes a connection idle that long. Streaming
(``stream=True``) is not faked.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def chat_completion(model: str, content: str = "ok") -> dict[str, Any]:
    """A minimal ChatCompletion, as ``POST /v1/chat/completions`` answers it."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def anthropic_message(model: str, text: str = "ok") -> dict[str, Any]:
    """A minimal Anthropic Message, as ``POST /v1/messages`` answers it."""
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client says otherwise
    disable_nagle_algorithm = True  # headers and body go out as two writes
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.fake.keepalive  # type: ignore[misc]
        super().setup()
        self.server.fake._accepted(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._forget(self.connection)

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake._begin()
        try:
            delay = fake.delay
            if delay:
                time.sleep(delay)
            status, body = _answer(self.path.split("?", 1)[0], raw)
        finally:
            fake._end()
        out = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("x-request-id", f"req_fake_{fake.requests}")
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _answer(path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    try:
        request = json.loads(raw) if raw else {}
    except ValueError:
        request = {}
    model = request.get("model") if isinstance(request, dict) else None
    model = model if isinstance(model, str) else "fake-model"
    if path == "/v1/chat/completions":
        return 200, chat_completion(model)
    if path == "/v1/messages":
        return 200, anthropic_message(model)
    error = {"message": f"no route {path}", "type": "invalid_request_error", "code": None}
    return 404, {"error": error}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # many callers connect at once
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up, or a connection cut by stop(), leaves a broken pipe: not news.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FakeOpenAI:
    """``with FakeOpenAI() as api: openai.OpenAI(api_key="x", base_url=api.url)``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        delay: float = 0.0,
        keepalive: float | None = None,
    ) -> None:
        self.delay = delay  # seconds before each answer
        self.keepalive = keepalive  # an idle connection is closed after this many seconds
        self.connections = 0  # TCP connections accepted
        self.requests = 0  # requests answered (their answer is being written)
        self.in_flight = 0  # requests read and not yet answered, now
        self.max_in_flight = 0  # the most requests in flight at once
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.fake = self
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self.anthropic_url = f"http://{host}:{self.port}"
        self.url = self.anthropic_url + "/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def _accepted(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._open.add(sock)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def _begin(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _end(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests += 1

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, and cut the connections still open so their threads end now."""
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            still_open = list(self._open)
        for sock in still_open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
