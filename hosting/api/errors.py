"""Render every API error in one shape.

``{"error": {"code": "...", "message": "...", "fields": {...}, ...extra}}``. The code
is stable and machine-readable; the message names the field and the fix.
"""

from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from hosting.errors import ServiceError
from hosting.models.sites import InvalidTransition


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def _validation_message(fields: dict[str, Any]) -> str:
    parts = []
    for name, problems in fields.items():
        first = problems[0] if isinstance(problems, list) and problems else problems
        if isinstance(first, dict):
            first = "; ".join(
                f"{k}: {v[0] if isinstance(v, list) else v}" for k, v in first.items()
            )
        parts.append(f"{name}: {first}")
    return "Invalid request. " + " ".join(parts)


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
        response.data = error_body(code, str(exc.detail))
    return response
