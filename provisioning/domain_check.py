"""Check that a customer's domain points at the platform and allows our CA.

A domain passes when either its A/AAAA records hold only the platform's addresses,
or it is a CNAME whose chain reaches the site's platform hostname (or ends at a name
holding only the platform's addresses). Its CAA records, found as RFC 8659 section 3
describes (the name itself, then each parent until a CAA record set exists), must
allow one of the CA identities Hostyard uses.

The check queries the given resolvers with dnspython and no cache, so a record the
customer just changed is seen on the next call once their DNS serves it.
"""

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from provisioning.drivers.dns.base import split_host_port

MAX_CNAME_HOPS = 8
CAA_CRITICAL_FLAG = 128
KNOWN_CAA_TAGS = {"issue", "issuewild", "iodef", "contactemail", "contactphone"}


@dataclass
class DomainCheck:
    """The outcome of one check: ``reason`` is a sentence for the customer."""

    ok: bool
    reason: str
    found: dict[str, Any] = field(default_factory=dict)
    # True when the failure may pass on its own (a timeout, a failing resolver).
    retryable: bool = False


class _LookupFailed(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass
class _Lookup:
    """The records of one name and type, or why there are none."""

    values: list[Any]
    nxdomain: bool = False
    refused: bool = False


def check_domain(
    domain: str,
    *,
    expected_ipv4: str,
    expected_ipv6: str = "",
    platform_hostname: str,
    resolvers: list[str],
    caa_identities: list[str],
    timeout: float = 5.0,
) -> DomainCheck:
    """Check ``domain``'s address records (or CNAME chain) and its CAA records.

    Never raises for DNS failures: NXDOMAIN, timeouts and failing resolvers come
    back as ``ok=False`` with a readable reason. Raises ``ValueError`` when
    ``resolvers`` is empty or contains an invalid address.
    """
    resolver = _make_resolver(resolvers, timeout)
    domain = domain.lower().rstrip(".")
    found: dict[str, Any] = {}
    try:
        result = _check_addresses(
            resolver,
            domain,
            expected_ipv4=expected_ipv4,
            expected_ipv6=expected_ipv6,
            platform_hostname=platform_hostname.lower().rstrip("."),
            found=found,
        )
        if result is None and caa_identities:
            result = _check_caa(resolver, domain, caa_identities, found)
    except _LookupFailed as exc:
        return DomainCheck(ok=False, reason=exc.reason, found=found, retryable=exc.retryable)

    if result is not None:
        return DomainCheck(ok=False, reason=result, found=found)
    return DomainCheck(ok=True, reason=_success_reason(domain, found), found=found)


def check_caa(
    domain: str, *, resolvers: list[str], caa_identities: list[str], timeout: float = 5.0
) -> DomainCheck:
    """Check only the CAA records that govern ``domain`` (for names without an A record).

    Never raises for DNS failures; raises ``ValueError`` for empty or invalid ``resolvers``.
    """
    resolver = _make_resolver(resolvers, timeout)
    domain = domain.lower().rstrip(".").removeprefix("*.")
    found: dict[str, Any] = {}
    try:
        reason = _check_caa(resolver, domain, caa_identities, found)
    except _LookupFailed as exc:
        return DomainCheck(ok=False, reason=exc.reason, found=found, retryable=exc.retryable)
    if reason is not None:
        return DomainCheck(ok=False, reason=reason, found=found)
    return DomainCheck(ok=True, reason=f"No CAA record forbids issuing for {domain}.", found=found)


def _check_addresses(
    resolver: dns.resolver.Resolver,
    domain: str,
    *,
    expected_ipv4: str,
    expected_ipv6: str,
    platform_hostname: str,
    found: dict[str, Any],
) -> str | None:
    """Return None when ``domain`` points at the platform, else the reason it does not."""
    chain = _follow_cname(resolver, domain)
    if chain:
        found["cname"] = chain
        if platform_hostname in chain:
            return None

    end = chain[-1] if chain else domain
    ipv4 = _addresses(resolver, end, "A", domain if not chain else None)
    ipv6 = _addresses(resolver, end, "AAAA", None)
    found["a"] = ipv4
    found["aaaa"] = ipv6
    expected_v6 = ipaddress.ip_address(expected_ipv6).compressed if expected_ipv6 else ""

    if chain:
        stray = [a for a in ipv4 if a != expected_ipv4] + [a for a in ipv6 if a != expected_v6]
        if not ipv4 and not ipv6:
            return (
                f"{domain} is a CNAME to {chain[-1]}, which has no A or AAAA record: "
                f"point the CNAME at {platform_hostname}."
            )
        if stray:
            return (
                f"{domain} resolves to {', '.join(stray)} through a CNAME to {chain[-1]}; "
                f"point the CNAME at {platform_hostname}."
            )
        return None

    if not ipv4 and not ipv6:
        return f"{domain} has no A or AAAA record: add an A record with {expected_ipv4}."
    wrong_v4 = [a for a in ipv4 if a != expected_ipv4]
    if wrong_v4:
        plural = "records are" if len(ipv4) > 1 else "record is"
        return (
            f"The A {plural} {', '.join(ipv4)}, expected {expected_ipv4}: "
            f"change the A record of {domain}."
        )
    wrong_v6 = [a for a in ipv6 if a != expected_v6]
    if wrong_v6 and expected_v6:
        return (
            f"The AAAA record is {', '.join(ipv6)}, expected {expected_v6}: "
            f"change the AAAA record of {domain}."
        )
    if wrong_v6:
        return (
            f"The AAAA record is {', '.join(ipv6)}, but the platform has no IPv6 address: "
            f"remove the AAAA record of {domain}."
        )
    return None


def _follow_cname(resolver: dns.resolver.Resolver, domain: str) -> list[str]:
    """Return the CNAME targets from ``domain`` on, in order (empty if it has none)."""
    chain: list[str] = []
    current = domain
    for _ in range(MAX_CNAME_HOPS):
        lookup = _lookup(resolver, current, "CNAME")
        if lookup.nxdomain and not chain:
            raise _LookupFailed(
                f"{domain} does not exist in DNS (NXDOMAIN): add an A record or a CNAME for it.",
                retryable=False,
            )
        if not lookup.values:
            return chain
        current = lookup.values[0].target.to_text().lower().rstrip(".")
        if current in chain or current == domain:
            raise _LookupFailed(f"The CNAME chain of {domain} loops at {current}.", retryable=False)
        chain.append(current)
    raise _LookupFailed(
        f"The CNAME chain of {domain} is longer than {MAX_CNAME_HOPS} names: shorten it.",
        retryable=False,
    )


def _addresses(
    resolver: dns.resolver.Resolver, name: str, rdtype: str, original: str | None
) -> list[str]:
    lookup = _lookup(resolver, name, rdtype)
    if lookup.nxdomain and original is not None:
        raise _LookupFailed(
            f"{original} does not exist in DNS (NXDOMAIN): add an A record or a CNAME for it.",
            retryable=False,
        )
    return sorted(ipaddress.ip_address(rdata.address).compressed for rdata in lookup.values)


def _check_caa(
    resolver: dns.resolver.Resolver, domain: str, identities: list[str], found: dict[str, Any]
) -> str | None:
    """Return None when the relevant CAA record set allows one of ``identities``."""
    wanted = {identity.lower() for identity in identities}
    name = dns.name.from_text(domain)
    while name != dns.name.root:
        lookup = _lookup(resolver, name.to_text(), "CAA", allow_refused=True)
        # A resolver that does not serve a parent (an authoritative-only server)
        # returns REFUSED; the climb stops there as if no CAA record existed.
        if lookup.refused:
            found["caa_unchecked_from"] = name.to_text().rstrip(".")
            return None
        if lookup.values:
            break
        name = name.parent()
    else:
        found["caa"] = None
        return None

    owner = name.to_text().rstrip(".")
    records = [(rdata.flags, rdata.tag.decode(), rdata.value.decode()) for rdata in lookup.values]
    found["caa"] = {"name": owner, "records": records}
    critical = [tag for flags, tag, _ in records if flags & CAA_CRITICAL_FLAG]
    unknown_critical = [tag for tag in critical if tag.lower() not in KNOWN_CAA_TAGS]
    if unknown_critical:
        return (
            f"CAA record at {owner} has the unknown critical property "
            f"'{unknown_critical[0]}', which forbids every CA: remove it or clear its flag."
        )

    allowed = [
        value.split(";", 1)[0].strip().lower() for _, tag, value in records if tag == "issue"
    ]
    if not allowed or wanted & set(allowed):
        return None
    names = ", ".join(sorted(a for a in allowed if a)) or "no CA"
    return (
        f"CAA record at {owner} forbids {sorted(wanted)[0]} (it allows {names}): "
        f'add a CAA record "0 issue \\"{sorted(wanted)[0]}\\"".'
    )


def _lookup(
    resolver: dns.resolver.Resolver, name: str, rdtype: str, *, allow_refused: bool = False
) -> _Lookup:
    try:
        answer = resolver.resolve(name, rdtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return _Lookup(values=[], nxdomain=True)
    except dns.resolver.NoNameservers as exc:
        errors = exc.kwargs.get("errors") or []
        if allow_refused and errors and all(str(error[3]) == "REFUSED" for error in errors):
            return _Lookup(values=[], refused=True)
        raise _LookupFailed(
            f"No resolver returned an answer for the {rdtype} lookup of {name} ({exc}). "
            "Try again later.",
            retryable=True,
        ) from exc
    except dns.exception.Timeout as exc:
        raise _LookupFailed(
            f"The {rdtype} lookup of {name} timed out at {_servers(resolver)}. Try again later.",
            retryable=True,
        ) from exc
    if answer.rrset is None:
        return _Lookup(values=[])
    return _Lookup(values=list(answer.rrset))


def _make_resolver(resolvers: list[str], timeout: float) -> dns.resolver.Resolver:
    if not resolvers:
        raise ValueError("check_domain needs at least one resolver as host:port")
    resolver = dns.resolver.Resolver(configure=False)
    nameservers: list[str | dns.nameserver.Nameserver] = []
    for address in resolvers:
        host, port = split_host_port(address)
        nameservers.append(dns.nameserver.Do53Nameserver(host, port=port))
    resolver.nameservers = nameservers
    resolver.cache = None
    resolver.timeout = timeout
    resolver.lifetime = timeout * 2
    return resolver


def _servers(resolver: dns.resolver.Resolver) -> str:
    return ", ".join(str(server) for server in resolver.nameservers)


def _success_reason(domain: str, found: dict[str, Any]) -> str:
    if found.get("cname"):
        return f"{domain} points at the platform through CNAME {' -> '.join(found['cname'])}."
    addresses = ", ".join(found.get("a", []) + found.get("aaaa", []))
    return f"{domain} resolves to {addresses}."
