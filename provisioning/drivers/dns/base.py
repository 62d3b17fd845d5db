"""The DNS driver interface.

Drivers publish A, AAAA and TXT records in zones the platform controls. Every call is
idempotent: a record that already exists with the expected value is success, one of
the same name and type with another value that Hostyard manages is replaced, and one
that Hostyard does not manage raises ``RecordConflictError`` and is left untouched.
"""

from dataclasses import dataclass
from typing import Protocol

SUPPORTED_TYPES = ("A", "AAAA", "TXT")


@dataclass(frozen=True)
class DnsRecord:
    """One resource record as the backend holds it; ``managed`` marks Hostyard's own."""

    name: str  # fully qualified, lower case, no trailing dot
    type: str  # "A", "AAAA" or "TXT"
    value: str
    ttl: int
    managed: bool
    record_id: str = ""  # the backend's identifier, where it has one (Cloudflare)


class DnsDriver(Protocol):
    def ensure_record(self, *, name: str, type: str, value: str, ttl: int) -> DnsRecord:
        """Create or replace the managed record ``name``/``type`` so it holds only ``value``."""
        ...

    def delete_record(self, *, name: str, type: str) -> bool:
        """Delete the managed records ``name``/``type``; return False if none existed."""
        ...

    def list_records(self) -> list[DnsRecord]:
        """List the records Hostyard manages, in one pass over the zone (for reconciling)."""
        ...
