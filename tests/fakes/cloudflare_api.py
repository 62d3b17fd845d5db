"""A stand-in for the Cloudflare v4 API, limited to zones and DNS records.

Cloudflare cannot run here, so tests talk to this server at its HTTP boundary
through the real ``cloudflare`` SDK. It speaks the v4 envelope (``success``,
``errors`` with ``code`` and ``message``, ``messages``, ``result``, ``result_info``)
and returns the error codes Cloudflare returns for the cases Hostyard handles:

* 403 with code 10000 "Authentication error" for a missing or wrong token;
* 400 with code 81058 "An identical record already exists." for a duplicate;
* 400 with code 81053 when A/AAAA and CNAME records would share a name;
* 404 with code 7003 for an unknown zone id and 81044 for an unknown record id;
* 429 with code 971 and a ``Retry-After`` header for a seeded, deterministic
  fraction of requests (the ``rate_limit_fraction`` knob).

NOTE: other validation errors (missing fields, a name outside the zone) use codes
chosen for this stand-in, and no test depends on their values.

The ``drop_create_responses`` knob stores a created record and then closes the
connection without a reply, as when a reply is lost on the way back.

It binds 127.0.0.1 only and keeps its state in memory.
"""

import json
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_PREFIX = "/client/v4"
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 5000


class ApiError(Exception):
    """An error the stand-in returns as a v4 envelope."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class RequestLogEntry:
    method: str
    path: str
    query: str
    status: int
    body: dict[str, Any] | None = None


@dataclass
class FakeCloudflare:
    """In-memory zones and records plus the fault knobs, shared by the handler threads."""

    token: str
    rate_limit_fraction: float = 0.0
    retry_after: str = "0"
    seed: int = 0
    # The next this-many creates are stored, then the connection is closed unanswered.
    drop_create_responses: int = 0
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    requests: list[RequestLogEntry] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def add_zone(self, name: str) -> str:
        """Create zone ``name`` and return its id."""
        zone_id = uuid.uuid4().hex
        with self.lock:
            self.zones[zone_id] = {"id": zone_id, "name": name, "status": "active"}
            self.records[zone_id] = {}
        return zone_id

    def set_rate_limit(self, fraction: float, *, retry_after: str = "0", seed: int = 0) -> None:
        """Return 429 for ``fraction`` of the following requests, chosen by a seeded RNG."""
        with self.lock:
            self.rate_limit_fraction = fraction
            self.retry_after = retry_after
            self._random = random.Random(seed)

    def zone_records(self, zone_name: str) -> list[dict[str, Any]]:
        """Return a copy of every record in zone ``zone_name``."""
        with self.lock:
            zone_id = self._zone_id(zone_name)
            return [dict(record) for record in self.records[zone_id].values()]

    def rate_limited_count(self) -> int:
        return sum(1 for entry in self.requests if entry.status == HTTPStatus.TOO_MANY_REQUESTS)

    def _zone_id(self, zone_name: str) -> str:
        for zone_id, zone in self.zones.items():
            if zone["name"] == zone_name:
                return zone_id
        raise KeyError(zone_name)

    def should_rate_limit(self) -> bool:
        with self.lock:
            return self._random.random() < self.rate_limit_fraction


class FakeCloudflareServer:
    """A threaded HTTP server for ``FakeCloudflare`` on 127.0.0.1."""

    def __init__(self, state: FakeCloudflare, port: int = 0) -> None:
        self.state = state
        handler = type("BoundHandler", (_Handler,), {"fake": state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeCloudflare
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes. Without TCP_NODELAY, Nagle's algorithm
    # and delayed ACKs hold the body back about 40 ms on every keep-alive reply.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Keep test output quiet, because ``FakeCloudflare.requests`` logs every request."""

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        try:
            status, payload = self._route(method, url.path, parse_qs(url.query), raw_body)
        except ApiError as exc:
            status, payload = exc.status, _envelope(None, errors=[(exc.code, exc.message)])
            if exc.status == HTTPStatus.TOO_MANY_REQUESTS:
                headers["Retry-After"] = self.fake.retry_after

        body_json = json.loads(raw_body) if raw_body else None
        with self.fake.lock:
            self.fake.requests.append(
                RequestLogEntry(method, url.path, url.query, status, body_json)
            )
            drop = method == "POST" and status == HTTPStatus.OK and self.fake.drop_create_responses
            if drop:
                self.fake.drop_create_responses -= 1
        if drop:
            self.close_connection = True
            return
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], raw_body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            raise ApiError(HTTPStatus.FORBIDDEN, 10000, "Authentication error")
        if self.fake.should_rate_limit():
            raise ApiError(
                HTTPStatus.TOO_MANY_REQUESTS,
                971,
                "Please wait and consider throttling your request speed",
            )

        parts = path.removeprefix(API_PREFIX).strip("/").split("/")
        body = json.loads(raw_body) if raw_body else {}
        if parts == ["zones"] and method == "GET":
            return HTTPStatus.OK, self._list_zones(query)
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            zone_id = parts[1]
            with self.fake.lock:
                if zone_id not in self.fake.zones:
                    raise ApiError(
                        HTTPStatus.NOT_FOUND,
                        7003,
                        f"Could not route to {path}, perhaps your object identifier is invalid?",
                    )
                if len(parts) == 3:
                    return self._records_collection(method, zone_id, query, body)
                if len(parts) == 4:
                    return self._record_item(method, zone_id, parts[3], body)
        raise ApiError(HTTPStatus.NOT_FOUND, 7000, "No route for that URI")

    def _list_zones(self, query: dict[str, list[str]]) -> dict[str, Any]:
        name = _first(query, "name")
        with self.fake.lock:
            zones = [
                dict(zone)
                for zone in self.fake.zones.values()
                if name is None or zone["name"] == name.lower()
            ]
        return _paginate(zones, query)

    def _records_collection(
        self, method: str, zone_id: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        records = self.fake.records[zone_id]
        if method == "GET":
            matching = [dict(r) for r in records.values() if _matches(r, query)]
            matching.sort(key=lambda r: (r["name"], r["type"], r["created_on"], r["id"]))
            return HTTPStatus.OK, _paginate(matching, query)
        if method == "POST":
            record = self._validated(zone_id, body, None)
            records[record["id"]] = record
            return HTTPStatus.OK, _envelope(dict(record))
        raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, 10405, f"Method {method} not allowed")

    def _record_item(
        self, method: str, zone_id: str, record_id: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        records = self.fake.records[zone_id]
        existing = records.get(record_id)
        if existing is None:
            raise ApiError(HTTPStatus.NOT_FOUND, 81044, "Record does not exist.")
        if method == "GET":
            return HTTPStatus.OK, _envelope(dict(existing))
        if method == "DELETE":
            del records[record_id]
            return HTTPStatus.OK, _envelope({"id": record_id})
        if method in ("PUT", "PATCH"):
            merged = {**existing, **body} if method == "PATCH" else body
            record = self._validated(zone_id, merged, existing)
            records[record_id] = record
            return HTTPStatus.OK, _envelope(dict(record))
        raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, 10405, f"Method {method} not allowed")

    def _validated(
        self, zone_id: str, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Build a record from a request body, checking what Cloudflare checks."""
        zone = self.fake.zones[zone_id]
        name = str(body.get("name", "")).lower().rstrip(".")
        record_type = str(body.get("type", ""))
        content = str(body.get("content", ""))
        if not name or not record_type or "ttl" not in body:
            raise ApiError(HTTPStatus.BAD_REQUEST, 9000, "DNS name, type and ttl are required.")
        if name != zone["name"] and not name.endswith("." + zone["name"]):
            raise ApiError(HTTPStatus.BAD_REQUEST, 9005, f"Name {name} is not in the zone.")
        if body.get("proxied") and record_type not in ("A", "AAAA", "CNAME"):
            raise ApiError(HTTPStatus.BAD_REQUEST, 9004, "This record type cannot be proxied.")

        for other in self.fake.records[zone_id].values():
            if existing is not None and other["id"] == existing["id"]:
                continue
            if other["name"] != name:
                continue
            if (other["type"], other["content"]) == (record_type, content):
                raise ApiError(HTTPStatus.BAD_REQUEST, 81058, "An identical record already exists.")
            if "CNAME" in (other["type"], record_type) and other["type"] != record_type:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    81053,
                    "An A, AAAA, or CNAME record with that host already exists.",
                )

        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return {
            "id": existing["id"] if existing else uuid.uuid4().hex,
            "zone_id": zone_id,
            "zone_name": zone["name"],
            "name": name,
            "type": record_type,
            "content": content,
            "ttl": int(body["ttl"]),
            "proxied": bool(body.get("proxied", False)),
            "proxiable": record_type in ("A", "AAAA", "CNAME"),
            "comment": body.get("comment"),
            "tags": list(body.get("tags") or []),
            "meta": {},
            "settings": {},
            "created_on": existing["created_on"] if existing else now,
            "modified_on": now,
        }


def _matches(record: dict[str, Any], query: dict[str, list[str]]) -> bool:
    name = _first(query, "name.exact") or _first(query, "name")
    if name is not None and record["name"] != name.lower().rstrip("."):
        return False
    record_type = _first(query, "type")
    if record_type is not None and record["type"] != record_type:
        return False
    comment = _first(query, "comment.exact")
    return comment is None or record["comment"] == comment


def _paginate(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    try:
        page = max(1, int(float(_first(query, "page") or 1)))
        per_page = int(float(_first(query, "per_page") or DEFAULT_PER_PAGE))
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, 1004, "page and per_page must be numbers.") from exc
    per_page = min(max(per_page, 1), MAX_PER_PAGE)

    start = (page - 1) * per_page
    chunk = items[start : start + per_page]
    result_info = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": len(items),
        "total_pages": max(1, -(-len(items) // per_page)),
    }
    return _envelope(chunk, result_info=result_info)


def _envelope(
    result: Any,
    *,
    errors: list[tuple[int, str]] | None = None,
    result_info: dict[str, int] | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "success": not errors,
        "errors": [{"code": code, "message": message} for code, message in errors or []],
        "messages": [],
        "result": result,
    }
    if result_info is not None:
        payload["result_info"] = result_info
    return payload


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None
