"""The DNS driver interface.

Drivers publish A, AAAA and TXT records in zones the platform controls. Every call is
idempotent: a record that already exists with the expected value is success, one of
the same name and type with another value that Hostyard manages is replaced, and one
that Hostyard does not manage raises ``RecordConflictError`` and is left untouched.
"""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from provisioning.errors import PermanentError

SUPPORTED_TYPES = ("A", "AAAA", "TXT")


@dataclass(frozen=True)
class DnsRecord:
    """One resource record as the backend stores it; ``managed`` marks Hostyard's own."""

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


def normalize_record_name(name: str) -> str:
    """Return ``name`` in the form ``DnsRecord.name`` uses: lower case, no trailing dot."""
    return name.strip().lower().rstrip(".")


def zone_for_name(name: str, zones: Sequence[str]) -> str:
    """Return the most specific zone in ``zones`` that contains ``name``.

    Raises ``PermanentError`` when no zone contains it, because the driver cannot
    publish a record outside the zones it was configured with.
    """
    name = normalize_record_name(name)
    candidates = [
        zone
        for zone in (normalize_record_name(zone) for zone in zones)
        if name == zone or name.endswith("." + zone)
    ]
    if not candidates:
        raise PermanentError(
            f"The DNS name {name} is outside the zones this driver manages "
            f"({', '.join(zones) or 'none configured'}): add its zone to the DNS settings.",
            code="dns_zone_not_managed",
        )
    return max(candidates, key=len)


def check_record_type(type: str) -> None:
    """Raise ``PermanentError`` unless ``type`` is one of ``SUPPORTED_TYPES``."""
    if type not in SUPPORTED_TYPES:
        raise PermanentError(
            f"DNS record type {type!r} is not supported: use one of {', '.join(SUPPORTED_TYPES)}.",
            code="dns_type_unsupported",
        )


def normalize_record_value(type: str, value: str) -> str:
    """Return ``value`` in canonical text form for record type ``type``.

    Addresses are compressed (``2001:db8::1``), and TXT values stay as given. Raises
    ``PermanentError`` for an unsupported type or an address of the wrong family.
    """
    check_record_type(type)
    if type == "TXT":
        return value

    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        address = None
    expected_version = 4 if type == "A" else 6
    if address is None or address.version != expected_version:
        raise PermanentError(
            f"{value!r} is not a valid IPv{expected_version} address, "
            f"which a {type} record requires.",
            code="dns_value_invalid",
        )
    return address.compressed


def split_host_port(address: str, default_port: int = 53) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into host and port.

    Raises ``ValueError`` naming the address when the port is not a number.
    """
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
    else:
        host, port_text = address, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit():
        raise ValueError(f"invalid port in DNS server address {address!r}: expected host:port")
    return host, int(port_text)
