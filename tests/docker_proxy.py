"""A real HTTP proxy on a Unix socket in front of a Docker Engine socket, for fault tests.

It forwards every request unchanged, and can be configured to:

- ``hold``: forward the first request matching a pattern, then keep its response
  back until ``clear`` (or for ``seconds``), as an engine that did the work but
  whose answer is late or lost;
- ``fail``: answer requests matching a pattern itself with an HTTP error status,
  without forwarding them, as an engine failing them;
- count the requests it forwarded (``seen``).

Patterns are regular expressions searched in ``"METHOD /path?query"``.
"""

import contextlib
import json
import re
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path

BUFFER = 65536


@dataclass
class Hold:
    pattern: re.Pattern[str]
    seconds: float | None
    triggered: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


@dataclass
class Fail:
    pattern: re.Pattern[str]
    status: int
    message: str


class DockerProxy:
    """Listen on ``socket_path`` and forward to the engine at ``upstream_path``."""

    def __init__(self, socket_path: Path, upstream_path: str) -> None:
        self.socket_path = socket_path
        self.upstream_path = upstream_path
        self.holds: list[Hold] = []
        self.fails: list[Fail] = []
        self.seen: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self._server = socketserver.ThreadingUnixStreamServer(str(socket_path), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> "DockerProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.clear()
        self._server.shutdown()
        self._server.server_close()

    def hold(self, pattern: str, *, seconds: float | None = None) -> Hold:
        rule = Hold(re.compile(pattern), seconds)
        with self._lock:
            self.holds.append(rule)
        return rule

    def fail(self, pattern: str, *, status: int = 500, message: str = "injected failure") -> None:
        with self._lock:
            self.fails.append(Fail(re.compile(pattern), status, message))

    def clear(self) -> None:
        """Drop every rule and let held responses through."""
        with self._lock:
            for rule in self.holds:
                rule.released.set()
            self.holds.clear()
            self.fails.clear()

    def count(self, pattern: str) -> int:
        compiled = re.compile(pattern)
        return sum(1 for line in list(self.seen) if compiled.search(line))

    # --- connection handling ------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.upstream_path)
        held: list[Hold] = []
        pump = threading.Thread(target=self._pump, args=(upstream, client, held), daemon=True)
        pump.start()
        try:
            self._forward_requests(client, upstream, held)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            pump.join(timeout=5)
            client.close()
            upstream.close()

    def _forward_requests(self, client: socket.socket, upstream: socket.socket, held) -> None:
        reader = client.makefile("rb")
        while True:
            head = self._read_head(reader)
            if head is None:
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target = request_line.split(" ")[:2]
            key = f"{method} {target}"
            headers = self._headers(head)

            failure = self._matching_fail(key)
            if failure is not None:
                self._drain_body(reader, headers)
                self._answer(client, failure)
                continue

            rule = self._matching_hold(key)
            if rule is not None:
                held.append(rule)
            self.seen.append(key)
            upstream.sendall(head)
            self._copy_body(reader, upstream, headers)
            if headers.get("upgrade"):
                # A hijacked stream (exec, attach) is raw bytes from here on.
                while chunk := reader.read1(BUFFER):
                    upstream.sendall(chunk)
                return

    def _pump(self, upstream: socket.socket, client: socket.socket, held: list[Hold]) -> None:
        try:
            while chunk := upstream.recv(BUFFER):
                while held:
                    rule = held.pop(0)
                    rule.triggered.set()
                    rule.released.wait(rule.seconds)
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)

    def _matching_fail(self, key: str) -> Fail | None:
        with self._lock:
            return next((rule for rule in self.fails if rule.pattern.search(key)), None)

    def _matching_hold(self, key: str) -> Hold | None:
        with self._lock:
            for rule in self.holds:
                if not rule.triggered.is_set() and rule.pattern.search(key):
                    # Only the first matching request is held.
                    self.holds.remove(rule)
                    return rule
        return None

    @staticmethod
    def _read_head(reader) -> bytes | None:
        lines = []
        while True:
            line = reader.readline()
            if not line:
                return None
            lines.append(line)
            if line in (b"\r\n", b"\n"):
                return b"".join(lines)

    @staticmethod
    def _headers(head: bytes) -> dict[str, str]:
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return headers

    @staticmethod
    def _copy_body(reader, upstream: socket.socket, headers: dict[str, str]) -> None:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = reader.readline()
                upstream.sendall(size_line)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                data = reader.read(size + 2)
                upstream.sendall(data)
                if size == 0:
                    return
        remaining = int(headers.get("content-length", "0") or 0)
        while remaining > 0:
            chunk = reader.read(min(BUFFER, remaining))
            if not chunk:
                return
            upstream.sendall(chunk)
            remaining -= len(chunk)

    def _drain_body(self, reader, headers: dict[str, str]) -> None:
        class Sink:
            def sendall(self, data: bytes) -> None:
                return None

        self._copy_body(reader, Sink(), headers)  # type: ignore[arg-type]

    @staticmethod
    def _answer(client: socket.socket, failure: Fail) -> None:
        body = json.dumps({"message": failure.message}).encode()
        head = (
            f"HTTP/1.1 {failure.status} Injected\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        client.sendall(head + body)
