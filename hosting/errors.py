"""The one application error type, rendered by ``hosting.api.errors``."""

from typing import Any


class ServiceError(Exception):
    """A request that the rules reject: a stable ``code``, a readable message, an HTTP status.

    ``field`` names the request field at fault, if one is; ``extra`` carries
    machine-readable facts (the quota, its limit and current use).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int = 400,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.field = field
        self.extra = extra or {}
