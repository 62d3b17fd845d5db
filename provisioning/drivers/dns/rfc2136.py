"""DNS driver for any authoritative server that takes RFC 2136 dynamic updates.

Updates and zone transfers are signed with one TSIG key (RFC 8945). Plain queries
for the current state go unsigned to the same primary server, over TCP.

Managed marking: RFC 2136 records carry no comment, so Hostyard keeps a companion
TXT record. For every record set ``<name>``/``<type>`` it manages, the TXT record
set at ``_hostyard.<name>`` contains the string ``managed-by=hostyard type=<type>``.
A record set without that marker belongs to someone else and is never changed.
The marker lives under its own owner name, so it cannot collide with a managed
TXT record at ``<name>`` itself, and names whose first label is ``_hostyard`` are
rejected.

Every change is one UPDATE message whose prerequisites (RFC 2136, section 2.4)
require the record set and its marker to be exactly as they were read. When another
writer changed them in between, the server rejects the whole message, and the driver
reads again and retries, a bounded number of times.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone
import structlog

from provisioning.drivers.dns.base import (
    DnsRecord,
    check_record_type,
    normalize_record_name,
    normalize_record_value,
    split_host_port,
    zone_for_name,
)
from provisioning.errors import PermanentError, RecordConflictError, TransientError

log = structlog.get_logger(__name__)

MARKER_LABEL = "_hostyard"
MARKER_TTL = 300
_MARKER_TEXT = re.compile(r"^managed-by=hostyard type=(?P<type>[A-Z]+)$")
# Prerequisite failures: the zone changed between our read and our update.
_RACE_RCODES = {dns.rcode.YXRRSET, dns.rcode.NXRRSET, dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN}
_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class _NameState:
    """One record set as the server stores it, with its marker record set."""

    rdataset: dns.rdataset.Rdataset | None
    cname_target: str | None
    marker: dns.rdataset.Rdataset | None

    def values(self, type: str) -> set[str]:
        return {_rdata_value(type, rdata) for rdata in self.rdataset or ()}

    def marked_types(self) -> set[str]:
        types = set()
        for rdata in self.marker or ():
            match = _MARKER_TEXT.match(_txt_value(rdata))
            if match:
                types.add(match["type"])
        return types


class Rfc2136Driver:
    """Publish A, AAAA and TXT records through RFC 2136 updates signed with TSIG."""

    def __init__(
        self,
        *,
        server: str,
        zones: Sequence[str],
        tsig_name: str,
        tsig_secret: str,
        tsig_algorithm: str = "hmac-sha256",
        timeout: float = 5.0,
    ) -> None:
        self.server = server
        self.host, self.port = split_host_port(server)
        self.zones = tuple(normalize_record_name(zone) for zone in zones)
        self.tsig_name = tsig_name
        self.tsig_algorithm = tsig_algorithm
        self.timeout = timeout
        self._keyring = dns.tsigkeyring.from_text({tsig_name: (tsig_algorithm, tsig_secret)})

    def __repr__(self) -> str:
        return (
            f"Rfc2136Driver(server={self.server!r}, zones={self.zones!r}, key={self.tsig_name!r})"
        )

    def ensure_record(self, *, name: str, type: str, value: str, ttl: int) -> DnsRecord:
        """Make ``name``/``type`` hold exactly ``value``. Idempotent.

        Returns the record. An existing record set without Hostyard's marker is left
        untouched: if it already holds only ``value`` the call succeeds with
        ``managed=False``, otherwise it raises ``RecordConflictError``. A CNAME at
        ``name`` also raises ``RecordConflictError``. Raises ``PermanentError`` for a
        rejected key or zone, and ``TransientError`` for timeouts and lost races.
        """
        name, zone = self._locate(name)
        value = normalize_record_value(type, value)

        for attempt in range(1, _MAX_ATTEMPTS + 1):
            state = self._read(name, type)
            managed = type in state.marked_types()
            current = state.values(type)
            current_ttl = state.rdataset.ttl if state.rdataset is not None else None
            if state.cname_target is not None:
                raise RecordConflictError(
                    f"{name} is a CNAME to {state.cname_target}, which Hostyard does not "
                    f"manage, so no {type} record can be added: remove the CNAME first.",
                )
            if not managed and current:
                if current == {value}:
                    return DnsRecord(name=name, type=type, value=value, ttl=ttl, managed=False)
                raise _conflict(name, type, current)
            if managed and current == {value} and current_ttl == ttl:
                return DnsRecord(name=name, type=type, value=value, ttl=ttl, managed=True)

            update = self._update_for(zone, name, type, state)
            update.replace(name + ".", ttl, _make_rdata(type, value))
            update.add(_marker_name(name), MARKER_TTL, _make_rdata("TXT", _marker_text(type)))
            if self._send(update, zone) == dns.rcode.NOERROR:
                log.info(
                    "dns.record_published",
                    driver="rfc2136",
                    name=name,
                    type=type,
                    value=value,
                    replaced=sorted(current),
                )
                return DnsRecord(name=name, type=type, value=value, ttl=ttl, managed=True)
            log.warning("dns.update_race", driver="rfc2136", name=name, type=type, attempt=attempt)

        raise TransientError(
            f"The {type} record of {name} kept changing while Hostyard updated it; "
            "the step will retry.",
            code="dns_update_race",
        )

    def delete_record(self, *, name: str, type: str) -> bool:
        """Delete the managed record set ``name``/``type`` and its marker. Idempotent.

        Returns False when no managed record existed. A record set without
        Hostyard's marker is left in place (and False returned), because it
        belongs to someone else.
        """
        name, zone = self._locate(name)
        check_record_type(type)

        for attempt in range(1, _MAX_ATTEMPTS + 1):
            state = self._read(name, type)
            if type not in state.marked_types():
                if state.rdataset is not None:
                    log.warning(
                        "dns.delete_skipped_unmanaged", driver="rfc2136", name=name, type=type
                    )
                return False

            existed = state.rdataset is not None
            update = self._update_for(zone, name, type, state)
            update.delete(name + ".", dns.rdatatype.from_text(type))
            update.delete(_marker_name(name), _make_rdata("TXT", _marker_text(type)))
            if self._send(update, zone) == dns.rcode.NOERROR:
                log.info("dns.record_deleted", driver="rfc2136", name=name, type=type)
                return existed
            log.warning("dns.update_race", driver="rfc2136", name=name, type=type, attempt=attempt)

        raise TransientError(
            f"The {type} record of {name} kept changing while Hostyard deleted it; "
            "the step will retry.",
            code="dns_update_race",
        )

    def list_records(self) -> list[DnsRecord]:
        """List every managed record, with one zone transfer (AXFR) per zone.

        Raises ``PermanentError`` when the server rejects the transfer or the key.
        """
        records: list[DnsRecord] = []
        for zone in self.zones:
            records.extend(self._list_zone(zone))
        return records

    def _list_zone(self, zone: str) -> list[DnsRecord]:
        transferred = self._transfer(zone)
        origin = transferred.origin
        assert origin is not None

        marked: set[tuple[str, str]] = set()
        for owner, rdataset in transferred.iterate_rdatasets(dns.rdatatype.TXT):
            absolute = owner.derelativize(origin)
            if absolute.labels[0].decode().lower() != MARKER_LABEL:
                continue
            target = normalize_record_name(absolute.parent().to_text())
            state = _NameState(rdataset=None, cname_target=None, marker=rdataset)
            marked.update((target, type) for type in state.marked_types())

        records = []
        for target, type in sorted(marked):
            node = transferred.get_node(dns.name.from_text(target))
            if node is None:
                continue
            record_set = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.from_text(type))
            if record_set is None:
                continue
            for rdata in record_set:
                records.append(
                    DnsRecord(
                        name=target,
                        type=type,
                        value=_rdata_value(type, rdata),
                        ttl=record_set.ttl,
                        managed=True,
                    )
                )
        return records

    def _locate(self, name: str) -> tuple[str, str]:
        name = normalize_record_name(name)
        if name.split(".", 1)[0] == MARKER_LABEL:
            raise PermanentError(
                f"The DNS name {name} starts with {MARKER_LABEL}, which this driver "
                "reserves for its ownership markers: choose another name.",
                code="dns_name_reserved",
            )
        return name, zone_for_name(name, self.zones)

    def _read(self, name: str, type: str) -> _NameState:
        response = self._query(name, dns.rdatatype.from_text(type))
        qname = dns.name.from_text(name)
        rdataset = _answer(response, qname, dns.rdatatype.from_text(type))
        cname = _answer(response, qname, dns.rdatatype.CNAME)
        cname_target = normalize_record_name(cname[0].target.to_text()) if cname else None

        marker_response = self._query(_marker_name(name), dns.rdatatype.TXT)
        marker = _answer(marker_response, dns.name.from_text(_marker_name(name)), dns.rdatatype.TXT)
        return _NameState(rdataset=rdataset, cname_target=cname_target, marker=marker)

    def _update_for(
        self, zone: str, name: str, type: str, state: _NameState
    ) -> dns.update.UpdateMessage:
        """Start an UPDATE whose prerequisites pin the record and marker sets as read."""
        update = dns.update.UpdateMessage(
            zone + ".",
            keyring=self._keyring,
            keyname=dns.name.from_text(self.tsig_name),
            keyalgorithm=self.tsig_algorithm,
        )
        rdtype = dns.rdatatype.from_text(type)
        marker_name = _marker_name(name)

        update.absent(name + ".", dns.rdatatype.CNAME)
        if state.rdataset is None:
            update.absent(name + ".", rdtype)
        else:
            update.present(name + ".", _prerequisite_set(state.rdataset))
        if state.marker is None:
            update.absent(marker_name, dns.rdatatype.TXT)
        else:
            update.present(marker_name, _prerequisite_set(state.marker))
        return update

    def _query(self, qname: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        query = dns.message.make_query(qname, rdtype)
        try:
            response = dns.query.tcp(query, self.host, port=self.port, timeout=self.timeout)
        except dns.exception.Timeout as exc:
            raise self._timeout_error("query", qname) from exc
        except OSError as exc:
            raise self._unreachable_error(exc) from exc

        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise self._rcode_error(rcode, f"a query for {qname}")
        return response

    def _send(self, update: dns.update.UpdateMessage, zone: str) -> dns.rcode.Rcode:
        """Send ``update``; return NOERROR or a prerequisite-failure rcode, raise otherwise."""
        try:
            response = dns.query.tcp(update, self.host, port=self.port, timeout=self.timeout)
        except dns.tsig.PeerBadKey as exc:
            raise PermanentError(
                f"The DNS server {self.server} does not know the TSIG key "
                f"'{self.tsig_name}': check the key name in the DNS settings.",
                code="dns_key_rejected",
                detail=str(exc),
            ) from exc
        except dns.tsig.PeerError as exc:
            raise PermanentError(
                f"The DNS server {self.server} rejected the signature made with TSIG key "
                f"'{self.tsig_name}' ({exc}): check the key's secret and algorithm.",
                code="dns_key_rejected",
                detail=str(exc),
            ) from exc
        except dns.exception.FormError as exc:
            # Knot returns an unsigned NOTAUTH for a zone it does not serve.
            raise PermanentError(
                f"The DNS server {self.server} returned an unsigned reply to an update of "
                f"zone {zone}, signed with key '{self.tsig_name}': check that it serves "
                "the zone and knows the key.",
                code="dns_zone_rejected",
                detail=str(exc),
            ) from exc
        except dns.exception.Timeout as exc:
            raise self._timeout_error("update", zone) from exc
        except OSError as exc:
            raise self._unreachable_error(exc) from exc

        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR or rcode in _RACE_RCODES:
            return rcode
        raise self._rcode_error(rcode, f"an update of zone {zone}")

    def _transfer(self, zone: str) -> dns.zone.Zone:
        try:
            return dns.zone.from_xfr(
                dns.query.xfr(
                    self.host,
                    zone + ".",
                    port=self.port,
                    keyring=self._keyring,
                    keyname=self.tsig_name,
                    keyalgorithm=self.tsig_algorithm,
                    timeout=self.timeout,
                    lifetime=self.timeout * 6,
                )
            )
        except dns.tsig.PeerError as exc:
            raise PermanentError(
                f"The DNS server {self.server} rejected TSIG key '{self.tsig_name}' for a "
                f"transfer of zone {zone} ({exc}): check the key's name, secret and algorithm.",
                code="dns_key_rejected",
                detail=str(exc),
            ) from exc
        except (dns.xfr.TransferError, dns.exception.FormError) as exc:
            raise PermanentError(
                f"The DNS server {self.server} rejected a zone transfer (AXFR) of {zone} with "
                f"TSIG key '{self.tsig_name}': allow the key to transfer the zone.",
                code="dns_transfer_rejected",
                detail=str(exc),
            ) from exc
        except dns.exception.Timeout as exc:
            raise self._timeout_error("zone transfer", zone) from exc
        except OSError as exc:
            raise self._unreachable_error(exc) from exc

    def _rcode_error(self, rcode: dns.rcode.Rcode, action: str) -> Exception:
        text = dns.rcode.to_text(rcode)
        if rcode == dns.rcode.SERVFAIL:
            return TransientError(
                f"The DNS server {self.server} failed {action} (SERVFAIL). The step will retry.",
                code="dns_server_failure",
            )
        if rcode in (dns.rcode.NOTAUTH, dns.rcode.REFUSED, dns.rcode.NOTZONE):
            return PermanentError(
                f"The DNS server {self.server} rejected {action} with {text}: check that it "
                f"serves the zone and allows TSIG key '{self.tsig_name}' to update it.",
                code="dns_zone_rejected",
            )
        return PermanentError(
            f"The DNS server {self.server} rejected {action} with {text}.",
            code="dns_update_rejected",
        )

    def _timeout_error(self, action: str, target: str) -> TransientError:
        return TransientError(
            f"The DNS {action} for {target} at {self.server} timed out after "
            f"{self.timeout:g} s. The step will retry.",
            code="dns_timeout",
        )

    def _unreachable_error(self, exc: OSError) -> TransientError:
        return TransientError(
            f"The DNS server {self.server} is unreachable ({exc.strerror or exc}); "
            "the step will retry.",
            code="dns_unreachable",
            detail=repr(exc),
        )


def _conflict(name: str, type: str, current: set[str]) -> RecordConflictError:
    return RecordConflictError(
        f"{name} already has a {type} record ({', '.join(sorted(current))}) that Hostyard "
        "does not manage: remove it, or choose another name.",
    )


def _marker_name(name: str) -> str:
    return f"{MARKER_LABEL}.{name}."


def _marker_text(type: str) -> str:
    return f"managed-by=hostyard type={type}"


def _make_rdata(type: str, value: str) -> dns.rdata.Rdata:
    if type == "TXT":
        data = value.encode()
        # A TXT character-string contains at most 255 octets, so longer values are split.
        chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(type), value)


def _rdata_value(type: str, rdata: dns.rdata.Rdata) -> str:
    if type == "TXT":
        return _txt_value(rdata)
    return normalize_record_value(type, rdata.to_text())


def _txt_value(rdata: dns.rdata.Rdata) -> str:
    return b"".join(rdata.strings).decode(errors="replace")  # type: ignore[attr-defined]


def _answer(
    response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.rdataset.Rdataset | None:
    for rrset in response.answer:
        if rrset.name == qname and rrset.rdtype == rdtype:
            return rrset
    return None


def _prerequisite_set(rdataset: dns.rdataset.Rdataset) -> dns.rdataset.Rdataset:
    # A value-dependent prerequisite carries TTL 0 (RFC 2136, section 2.4.2).
    return dns.rdataset.from_rdata_list(0, list(rdataset))
