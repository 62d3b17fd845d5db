"""DNS driver for Cloudflare, through the ``cloudflare`` SDK (v5).

Managed marking: a record is Hostyard's when its ``comment`` is exactly
``managed-by: hostyard``. Records with any other comment, or none, belong to
someone else and are never changed.

The SDK's own retries are off (``max_retries=0``) so that this driver decides what
to retry. A 429 is retried after the ``Retry-After`` seconds Cloudflare sends (or an
exponential backoff when the header is missing), as are 5xx responses and connection
errors, up to ``max_attempts`` calls; then ``TransientError`` carries the last wait
as ``retry_after``. A rejected token, a missing zone and other 4xx answers raise
``PermanentError`` with a readable message and the API's error codes as detail.
"""

import email.utils
import functools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import cloudflare
import structlog

from provisioning.drivers.dns.base import (
    SUPPORTED_TYPES,
    DnsRecord,
    check_record_type,
    normalize_record_name,
    normalize_record_value,
    zone_for_name,
)
from provisioning.errors import PermanentError, RecordConflictError, TransientError

log = structlog.get_logger(__name__)

MANAGED_COMMENT = "managed-by: hostyard"
# "The record already exists." and "An identical record already exists."
RECORD_EXISTS_CODES = frozenset({81057, 81058})
# Cloudflare's value for "automatic" TTL; proxied records always have it.
AUTOMATIC_TTL = 1
PROXIABLE_TYPES = ("A", "AAAA")

T = TypeVar("T")


class CloudflareDriver:
    """Publish A, AAAA and TXT records in one Cloudflare zone."""

    def __init__(
        self,
        *,
        api_token: str,
        base_url: str,
        zone: str,
        proxied: bool = False,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        max_wait: float = 60.0,
        per_page: int = 100,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url:
            raise PermanentError(
                "The Cloudflare driver has no API base URL: set HOSTYARD_CLOUDFLARE_BASE_URL "
                "(https://api.cloudflare.com/client/v4 for Cloudflare itself).",
                code="dns_not_configured",
            )
        if not api_token:
            raise PermanentError(
                "The Cloudflare driver has no API token: set CLOUDFLARE_API_TOKEN.",
                code="dns_not_configured",
            )
        self.zone = normalize_record_name(zone)
        self.proxied = proxied
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.max_wait = max_wait
        self.per_page = per_page
        self._sleep = sleep
        self._client = cloudflare.Cloudflare(
            api_token=api_token, base_url=base_url, max_retries=0, timeout=timeout
        )
        self._zone_id: str | None = None

    def __repr__(self) -> str:
        return f"CloudflareDriver(zone={self.zone!r}, proxied={self.proxied!r})"

    def ensure_record(self, *, name: str, type: str, value: str, ttl: int) -> DnsRecord:
        """Make ``name``/``type`` hold exactly ``value``. Idempotent.

        Replaces a managed record with another value in place and deletes managed
        duplicates. An unmanaged record that already holds only ``value`` is success
        with ``managed=False``; any other unmanaged record of that name and type
        raises ``RecordConflictError``. "Record already exists" responses to a create
        are treated as a lookup. Raises ``TransientError`` after repeated 429s.
        """
        name = self._name_in_zone(name)
        value = normalize_record_value(type, value)
        proxied = self.proxied and type in PROXIABLE_TYPES
        wanted_ttl = AUTOMATIC_TTL if proxied else ttl
        wanted = {"content": value, "ttl": wanted_ttl, "proxied": proxied}

        for _ in range(2):
            existing = list(self._records(f"look up {type} {name}", name=name, type=type))
            managed = [record for record in existing if _is_managed(record)]
            foreign = [record for record in existing if not _is_managed(record)]
            if foreign:
                if not managed and {record.content for record in foreign} == {value}:
                    return self._to_record(foreign[0])
                raise _conflict(name, type, foreign)

            if managed:
                return self._converge(managed, name=name, type=type, wanted=wanted)
            try:
                created = self._request(
                    f"create {type} {name}",
                    functools.partial(
                        self._client.dns.records.create,
                        zone_id=self._zone(),
                        name=name,
                        type=type,  # type: ignore[arg-type]
                        comment=MANAGED_COMMENT,
                        **wanted,
                    ),
                    allow=(cloudflare.BadRequestError,),
                )
            except cloudflare.BadRequestError as exc:
                if not _error_codes(exc) & RECORD_EXISTS_CODES:
                    raise self._api_error(f"create {type} {name}", exc) from exc
                log.info("dns.record_exists_on_create", driver="cloudflare", name=name, type=type)
                continue
            log.info("dns.record_published", driver="cloudflare", name=name, type=type, value=value)
            return self._to_record(created)

        raise TransientError(
            f"Cloudflare reported the {type} record of {name} as existing but did not list "
            "it. The step will retry.",
            code="dns_update_race",
        )

    def delete_record(self, *, name: str, type: str) -> bool:
        """Delete the managed records ``name``/``type``. Idempotent.

        Returns False when none existed. Unmanaged records are left in place.
        """
        name = self._name_in_zone(name)
        check_record_type(type)

        deleted = False
        for record in self._records(f"look up {type} {name}", name=name, type=type):
            if not _is_managed(record):
                log.warning("dns.delete_skipped_unmanaged", driver="cloudflare", name=name)
                continue
            deleted = self._delete(record.id, f"delete {type} {name}") or deleted
        if deleted:
            log.info("dns.record_deleted", driver="cloudflare", name=name, type=type)
        return deleted

    def list_records(self) -> list[DnsRecord]:
        """List every managed record in the zone, in one paginated pass."""
        return [
            self._to_record(record)
            for record in self._records(f"list records of {self.zone}")
            if _is_managed(record) and record.type in SUPPORTED_TYPES
        ]

    def _converge(
        self, managed: list[Any], *, name: str, type: str, wanted: dict[str, Any]
    ) -> DnsRecord:
        """Keep one managed record holding ``wanted`` and delete the others."""
        managed.sort(key=lambda record: record.content != wanted["content"])
        keep, extras = managed[0], managed[1:]
        for extra in extras:
            self._delete(extra.id, f"delete duplicate {type} {name}")

        current = {"content": keep.content, "ttl": int(keep.ttl), "proxied": bool(keep.proxied)}
        if current == wanted:
            return self._to_record(keep)

        updated = self._request(
            f"update {type} {name}",
            functools.partial(
                self._client.dns.records.update,
                keep.id,
                zone_id=self._zone(),
                name=name,
                type=type,  # type: ignore[arg-type]
                comment=MANAGED_COMMENT,
                **wanted,
            ),
        )
        log.info(
            "dns.record_replaced",
            driver="cloudflare",
            name=name,
            type=type,
            value=wanted["content"],
            previous=keep.content,
        )
        return self._to_record(updated)

    def _delete(self, record_id: str, action: str) -> bool:
        try:
            self._request(
                action,
                functools.partial(self._client.dns.records.delete, record_id, zone_id=self._zone()),
                allow=(cloudflare.NotFoundError,),
            )
        except cloudflare.NotFoundError:
            return False
        return True

    def _records(self, action: str, **filters: str) -> Iterator[Any]:
        """Yield the zone's records matching ``filters``, one page per request."""
        params: dict[str, Any] = {"type": filters["type"]} if "type" in filters else {}
        if "name" in filters:
            params["name"] = {"exact": filters["name"]}

        page = 1
        while True:
            listing = self._request(
                action,
                functools.partial(
                    self._client.dns.records.list,
                    zone_id=self._zone(),
                    page=page,
                    per_page=self.per_page,
                    **params,
                ),
            )
            items = listing.result or []
            yield from items
            # The SDK's result_info model declares only page and per_page, but keeps
            # the other fields Cloudflare sends, such as total_pages.
            last_page = getattr(listing.result_info, "total_pages", None)
            if len(items) < self.per_page or (last_page is not None and page >= last_page):
                return
            page += 1

    def _zone(self) -> str:
        """Return the zone's id, looked up by name once per driver."""
        if self._zone_id is None:
            listing = self._request(
                f"look up zone {self.zone}",
                functools.partial(self._client.zones.list, name=self.zone),
            )
            zones = [zone for zone in listing.result or [] if zone.name == self.zone]
            if not zones:
                raise PermanentError(
                    f"Cloudflare has no zone named {self.zone} that this API token can read: "
                    "check HOSTYARD_CLOUDFLARE_ZONE and the token's Zone:Read permission.",
                    code="dns_zone_not_found",
                )
            self._zone_id = zones[0].id
        return self._zone_id

    def _name_in_zone(self, name: str) -> str:
        name = normalize_record_name(name)
        zone_for_name(name, [self.zone])
        return name

    def _request(
        self,
        action: str,
        call: Callable[[], T],
        *,
        allow: tuple[type[cloudflare.APIStatusError], ...] = (),
    ) -> T:
        """Run one API call, retrying rate limits, 5xx and connection errors.

        Exceptions of the types in ``allow`` reach the caller unchanged; other API
        errors become ``PermanentError`` or, once retries are spent, ``TransientError``.
        """
        wait = 0.0
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return call()
            except allow:
                raise
            except cloudflare.RateLimitError as exc:
                requested = _retry_after(exc.response)
                wait = self._backoff(attempt) if requested is None else requested
                reason = "rate limited (429)"
            except cloudflare.InternalServerError as exc:
                wait = self._backoff(attempt)
                reason = f"server error ({exc.status_code})"
            except cloudflare.APIConnectionError as exc:
                wait = self._backoff(attempt)
                reason = (
                    "timed out"
                    if isinstance(exc, cloudflare.APITimeoutError)
                    else ("connection failed")
                )
            except cloudflare.APIStatusError as exc:
                raise self._api_error(action, exc) from exc

            if attempt < self.max_attempts:
                log.warning(
                    "cloudflare.retry",
                    action=action,
                    reason=reason,
                    attempt=attempt,
                    wait_seconds=wait,
                )
                self._sleep(min(wait, self.max_wait))

        raise TransientError(
            f"Cloudflare could not {action}: {reason} after {self.max_attempts} attempts; "
            "the step will retry.",
            code="dns_rate_limited" if reason.startswith("rate") else "dns_unavailable",
            retry_after=wait,
        )

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_base * 2 ** (attempt - 1), self.max_wait)

    def _api_error(self, action: str, exc: cloudflare.APIStatusError) -> PermanentError:
        detail = "; ".join(f"{error.code}: {error.message}" for error in exc.errors) or str(exc)
        if isinstance(exc, cloudflare.AuthenticationError | cloudflare.PermissionDeniedError):
            return PermanentError(
                f"Cloudflare rejected the API token when trying to {action} "
                f"(HTTP {exc.status_code}, {detail}): check CLOUDFLARE_API_TOKEN and that it "
                f"may edit DNS in zone {self.zone}.",
                code="dns_auth_failed",
                detail=detail,
            )
        if isinstance(exc, cloudflare.NotFoundError):
            self._zone_id = None
            return PermanentError(
                f"Cloudflare could not {action}: zone {self.zone} or the record was not found "
                f"({detail}).",
                code="dns_zone_not_found",
                detail=detail,
            )
        return PermanentError(
            f"Cloudflare rejected the request to {action} (HTTP {exc.status_code}, {detail}).",
            code="dns_request_rejected",
            detail=detail,
        )

    def _to_record(self, record: Any) -> DnsRecord:
        return DnsRecord(
            name=normalize_record_name(record.name),
            type=record.type,
            value=record.content or "",
            ttl=int(record.ttl),
            managed=_is_managed(record),
            record_id=record.id,
        )


def _is_managed(record: Any) -> bool:
    return getattr(record, "comment", None) == MANAGED_COMMENT


def _error_codes(exc: cloudflare.APIStatusError) -> set[int]:
    return {error.code for error in exc.errors if error.code is not None}


def _conflict(name: str, type: str, foreign: list[Any]) -> RecordConflictError:
    values = ", ".join(sorted(str(record.content) for record in foreign))
    return RecordConflictError(
        f"{name} already has a {type} record ({values}) in Cloudflare that Hostyard does "
        f"not manage (its comment is not '{MANAGED_COMMENT}'): remove it, or choose another name.",
    )


def _retry_after(response: Any) -> float | None:
    """Return the seconds in a ``Retry-After`` header (delta or HTTP date), if any."""
    header = response.headers.get("retry-after") if response is not None else None
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
