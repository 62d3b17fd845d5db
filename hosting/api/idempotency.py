"""``Idempotency-Key`` support for POST requests.

The first request with a key inserts a record, runs, and stores its response. Later
requests with the same key and body get that response again, with the header
``Idempotent-Replayed: true``. A different body with the same key is rejected with
422. Requests that arrive while the first is still running wait for its response.
"""

import hashlib
import json
import time
from collections.abc import Callable

from django.db import IntegrityError, transaction
from rest_framework.request import Request
from rest_framework.response import Response

from hosting.api.errors import error_body
from hosting.models import IdempotencyRecord, Organization

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# How long a concurrent request waits for the first one's response before getting 409.
WAIT_SECONDS = 15.0
POLL_SECONDS = 0.05


def fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    return Response(
        record.response_body,
        status=record.response_status,
        headers={**record.response_headers, "Idempotent-Replayed": "true"},
    )


def _wait_for_answer(record_id: int) -> IdempotencyRecord | None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        record = IdempotencyRecord.objects.filter(pk=record_id).first()
        if record is None or record.response_status is not None:
            return record
        time.sleep(POLL_SECONDS)
    return None


def run_idempotently(
    request: Request, organization: Organization, handler: Callable[[], Response]
) -> Response:
    """Run ``handler`` at most once per organization and ``Idempotency-Key`` value.

    A unique constraint on (organization, key) enforces this. If ``handler`` raises,
    the record is deleted, so the client may retry with the same key.
    """
    key = request.headers.get(HEADER)
    if key is None:
        return handler()
    if not key or len(key) > MAX_KEY_LENGTH:
        body = error_body(
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters long.",
            fields={HEADER: ["invalid length"]},
        )
        return Response(body, status=400)

    request_print = fingerprint(request)
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                organization=organization, key=key, request_fingerprint=request_print
            )
    except IntegrityError:
        existing = IdempotencyRecord.objects.get(organization=organization, key=key)
        if existing.request_fingerprint != request_print:
            return Response(
                error_body(
                    "idempotency_key_reused",
                    f"{HEADER} {key!r} was already used with a different request body; "
                    "use a new key for a new request.",
                ),
                status=422,
            )
        answered = (
            existing if existing.response_status is not None else _wait_for_answer(existing.pk)
        )
        if answered is None:
            return Response(
                error_body(
                    "idempotency_in_progress",
                    f"A request with {HEADER} {key!r} is still being processed; retry shortly.",
                ),
                status=409,
            )
        return _replay(answered)

    try:
        response = handler()
    except Exception:
        # Nothing was stored for this key, so the client may retry it.
        record.delete()
        raise

    headers = {name: value for name, value in response.items() if name in ("Location",)}
    record.response_status = response.status_code
    record.response_body = json.loads(json.dumps(response.data, default=str))
    record.response_headers = headers
    record.save(update_fields=["response_status", "response_body", "response_headers"])
    return response
