"""Errors raised by provisioning steps and drivers.

A step that raises ``TransientError`` is retried with backoff (the outside service may
recover: a timeout, a 5xx, a rate limit). A step that raises ``PermanentError`` fails
its operation at once, because repeating the same call cannot succeed (an image that
does not exist, a rejected credential, a domain that points elsewhere).
Any other exception is treated as transient and keeps its traceback as the detail.
"""


class ProvisioningError(Exception):
    """Base class: a readable message for people plus a stable machine code."""

    code = "provisioning_error"

    def __init__(self, message: str, *, code: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # Technical detail (an engine's raw response, a traceback) kept apart from the message.
        self.detail = detail


class TransientError(ProvisioningError):
    """A failure that may go away: retry the step later."""

    code = "transient_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, detail=detail)
        # Seconds the remote service asked us to wait (e.g. an HTTP Retry-After header).
        self.retry_after = retry_after


class PermanentError(ProvisioningError):
    """A failure that repeating the same call cannot fix: fail the operation."""

    code = "permanent_error"


class RecordConflictError(PermanentError):
    """A DNS record with another value exists and is not managed by Hostyard."""

    code = "dns_record_conflict"
