from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request


class SitePagination(CursorPagination):
    """Cursor pagination: stable under concurrent inserts and cheap on large tables."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError(
                {"cursor": ["Invalid cursor; pass the 'next' or 'previous' link unchanged."]}
            ) from exc
