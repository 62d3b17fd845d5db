from rest_framework.pagination import CursorPagination


class SitePagination(CursorPagination):
    """Cursor pagination: stable under concurrent inserts and cheap on large tables."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500
