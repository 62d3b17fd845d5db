"""Render every API error in one shape.

``{"error": {"code": "...", "message": "...", "fields": {...}, ...extra}}``. The code
is stable and machine-readable; the message names the field and the fix.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from hosting.errors import ServiceError
from hosting.models.sites import InvalidTransition


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


# Messages that repeat a client's value are cut here, so a huge value is not echoed back.
MAX_MESSAGE_LENGTH = 300


def _shorten(text: str) -> str:
    if len(text) <= MAX_MESSAGE_LENGTH:
        return text
    return text[: MAX_MESSAGE_LENGTH - 1] + "…"


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {_shorten(str(key)): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return _shorten(str(detail))


def _validation_message(fields: dict[str, Any]) -> str:
    parts = []
    for name, problems in fields.items():
        first = problems[0] if isinstance(problems, list) and problems else problems
        if isinstance(first, dict):
            first = "; ".join(
                f"{k}: {v[0] if isinstance(v, list) else v}" for k, v in first.items()
            )
        parts.append(f"{name}: {first}")
    return _shorten("Invalid request. " + " ".join(parts))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        extra: dict[str, Any] = dict(exc.extra)
        if exc.field:
            extra["fields"] = {exc.field: [exc.message]}
        return Response(error_body(exc.code, exc.message, **extra), status=exc.status)

    if isinstance(exc, InvalidTransition):
        return Response(error_body("invalid_state", str(exc)), status=status.HTTP_409_CONFLICT)

    if isinstance(exc, Http404):
        exc = exceptions.NotFound()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None

    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        fields = _flatten(detail)
        response.data = error_body("invalid", _validation_message(fields), fields=fields)
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        response.data = error_body(code, _shorten(str(exc.detail)))
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 handler: the API's error shape under /api/, Django's page elsewhere."""
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = error_body("payload_too_large", f"Request body exceeds {limit} bytes.")
        return JsonResponse(body, status=413)
    return JsonResponse(error_body("bad_request", "Malformed request."), status=400)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    hint = " Remove the trailing slash." if request.path.endswith("/") else ""
    message = f"No API endpoint at {_shorten(request.path)}.{hint} GET /api/v1/schema lists them."
    return JsonResponse(error_body("not_found", message), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if not _is_api(request):
        return defaults.server_error(request)
    message = (
        "Internal error; the request may not have been applied. "
        "Retry with the same Idempotency-Key."
    )
    return JsonResponse(error_body("server_error", message), status=500)
