"""Certificate issuance and renewal: which names, when an order may be placed, and storage.

An order is placed only when three conditions hold. First, no stored certificate
for the same names stays valid longer than ``HOSTYARD_CERT_RENEW_DAYS``. Second, the
per-name order budget allows it: failed validations back off, and a CA rate limit
is honoured until its retry time. Third, the pre-order checks pass: each name
resolves to the platform at the authoritative server, no CAA record forbids the CA,
and the edge serves a token just written for that name. A failed check places no
order.

Private keys are encrypted with ``provisioning.crypto`` before they are stored and
are decrypted only to hand them to the ACME client and the edge.
"""

import secrets
from datetime import timedelta
from typing import Any

import requests
import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from hosting.models import (
    AcmeAccount,
    Certificate,
    CertificateKind,
    CertificateStatus,
    Domain,
    DomainStatus,
    Site,
)
from provisioning.crypto import decrypt_private_key, encrypt_private_key
from provisioning.domain_check import DomainCheck, check_caa, check_domain
from provisioning.drivers import registry
from provisioning.drivers.acme.client import ChallengeType, IssuedCertificate
from provisioning.engine.runner import worker_identity
from provisioning.errors import PermanentError, TransientError

log = structlog.get_logger(__name__)

# An order (all validations plus download) is expected to finish well within this.
ORDER_LEASE_SECONDS = 300


class PrecheckFailed(TransientError):
    """A pre-order check failed: no order was placed. ``reason`` is for the customer."""

    code = "certificate_precheck_failed"

    def __init__(self, reason: str, *, found: dict[str, Any] | None = None) -> None:
        super().__init__(f"No certificate was ordered: {reason}")
        self.reason = reason
        self.found = found or {}


class OrderDeferred(TransientError):
    """The order budget does not allow an order yet; ``retry_after`` is the wait in seconds."""

    code = "certificate_order_deferred"


# --- names --------------------------------------------------------------------------


def platform_zone() -> str:
    return str(settings.HOSTYARD_PLATFORM_DOMAIN).strip().lower().rstrip(".")


def check_resolvers() -> list[str]:
    """Return the resolvers for domain checks: the setting, else the RFC 2136 primary."""
    configured = [r for r in settings.HOSTYARD_DOMAIN_CHECK_RESOLVERS if r.strip()]
    return configured or [settings.HOSTYARD_RFC2136_SERVER]


def uses_platform_wildcard() -> bool:
    """Return True when platform hostnames share one DNS-01 wildcard certificate."""
    return bool(settings.HOSTYARD_ACME_PLATFORM_WILDCARD) and registry.dns_enabled()


def site_certificate_spec(site: Site) -> dict[str, Any]:
    """Describe the certificate that covers ``site.hostname``: wildcard or per hostname."""
    if uses_platform_wildcard():
        zone = platform_zone()
        return {
            "key": f"wildcard:{zone}",
            "kind": CertificateKind.WILDCARD,
            "names": [f"*.{zone}"],
            "challenge": "dns-01",
            "site": None,
        }
    return {
        "key": f"hostname:{site.hostname}",
        "kind": CertificateKind.HOSTNAME,
        "names": [site.hostname],
        "challenge": "http-01",
        "site": site,
    }


def domain_certificate_spec(domain: Domain) -> dict[str, Any]:
    return {
        "key": f"domain:{domain.name}",
        "kind": CertificateKind.DOMAIN,
        "names": [domain.name],
        "challenge": "http-01",
        "site": domain.site,
    }


# --- services -------------------------------------------------------------------------


def ensure_certificate(
    *, key: str, kind: str, names: list[str], challenge: str, site: Site | None, target: str
) -> Certificate:
    """Return the stored certificate for ``names``, ordering one first if it is missing or due.

    The certificate is (re)loaded into the edge either way, so a restarted proxy gets
    it back. ``target`` is the hostname that HTTP-01 names may CNAME to. Idempotent.
    Raises ``PrecheckFailed`` or ``OrderDeferred`` (no order placed), ``TransientError``
    for CA trouble, and ``PermanentError`` when the CA rejects a validation.
    """
    certificate, _ = Certificate.objects.get_or_create(
        key=key, defaults={"kind": kind, "names": names, "challenge": challenge, "site": site}
    )
    if not certificate.valid_for(settings.HOSTYARD_CERT_RENEW_DAYS):
        certificate = order_certificate(certificate, target=target)
    load_into_edge(certificate)
    return certificate


def order_certificate(certificate: Certificate, *, target: str) -> Certificate:
    """Check, order and store a new certificate for the row's names, replacing older PEMs.

    No transaction stays open during the checks or the order. Raises the errors of
    ``ensure_certificate`` and records every failure on the row.
    """
    _check_budget(certificate)
    owner = worker_identity()
    if not certificate.claim_ordering(owner=owner, lease_seconds=ORDER_LEASE_SECONDS):
        raise OrderDeferred(
            f"Another worker is ordering the certificate for {', '.join(certificate.names)}: "
            "retry once it finishes.",
            retry_after=10.0,
        )

    try:
        # A worker that held the lease just before may have stored a fresh certificate.
        certificate.refresh_from_db()
        if certificate.valid_for(settings.HOSTYARD_CERT_RENEW_DAYS):
            return certificate
        precheck(certificate.names, certificate.challenge, target=target)
        issued = _order(certificate)
    except TransientError as exc:
        # Includes PrecheckFailed: no validation failed at the CA, so the budget is kept.
        _record_failure(certificate, exc, count=False)
        raise
    except PermanentError as exc:
        _record_failure(certificate, exc, count=True)
        raise
    finally:
        certificate.release_ordering(owner=owner)

    _store(certificate, issued)
    return certificate


def load_into_edge(certificate: Certificate) -> None:
    """Create or replace the certificate in the edge under its ``edge_id``. Idempotent."""
    if not registry.edge_enabled() or certificate.status != CertificateStatus.ISSUED:
        return
    registry.edge().load_certificate(
        cert_id=certificate.edge_id,
        cert_pem=certificate.fullchain_pem,
        key_pem=decrypt_private_key(certificate.private_key_encrypted),
    )


def remove_certificate(certificate: Certificate) -> None:
    """Remove the certificate from the edge and delete its row. Idempotent."""
    if registry.edge_enabled():
        registry.edge().remove_certificate(certificate.edge_id)
    Certificate.objects.filter(pk=certificate.pk).delete()
    log.info("certificate removed", certificate=certificate.key)


def acme_account_key() -> str:
    """Return the ACME account key for the configured directory, registering it once.

    When two workers register at the same time, both accounts exist at the CA but
    only the first stored one is used from then on.
    """
    directory = settings.HOSTYARD_ACME_DIRECTORY_URL
    stored = AcmeAccount.objects.filter(directory_url=directory).first()
    if stored is not None:
        return decrypt_private_key(stored.key_encrypted)

    account = registry.acme().register_account()
    try:
        with transaction.atomic():
            AcmeAccount.objects.create(
                directory_url=directory,
                uri=account.uri,
                key_encrypted=encrypt_private_key(account.key_pem),
            )
    except IntegrityError:
        stored = AcmeAccount.objects.get(directory_url=directory)
        return decrypt_private_key(stored.key_encrypted)
    log.info("acme account stored", account=account.uri, directory=directory)
    return account.key_pem


# --- pre-order checks -------------------------------------------------------------------


def precheck(names: list[str], challenge: str, *, target: str) -> None:
    """Check every name before an order; raise ``PrecheckFailed`` with the first problem.

    HTTP-01 names must resolve to the platform (or CNAME to ``target``) at the
    authoritative server, allow the CA in CAA, and reach the edge: a token written to
    the edge must come back from ``http://<name>/.well-known/acme-challenge/``.
    DNS-01 names need only the CAA check.
    """
    identities = [settings.HOSTYARD_ACME_CAA_IDENTITY]
    for name in names:
        result: DomainCheck
        if challenge == "dns-01":
            result = check_caa(name, resolvers=check_resolvers(), caa_identities=identities)
        else:
            result = check_domain(
                name,
                expected_ipv4=settings.HOSTYARD_PUBLIC_IPV4,
                expected_ipv6=settings.HOSTYARD_PUBLIC_IPV6,
                platform_hostname=target,
                resolvers=check_resolvers(),
                caa_identities=identities,
            )
        if not result.ok:
            raise PrecheckFailed(result.reason, found=result.found)
        if challenge == "http-01":
            http_self_check(name)


def http_self_check(name: str) -> None:
    """Write a random token to the edge and read it back through its HTTP port as ``name``.

    The request goes to ``HOSTYARD_PUBLIC_IPV4``, and to ``HOSTYARD_PUBLIC_IPV6`` when
    set (the addresses the name must resolve to, which the CA may use), with
    ``Host: name`` as the CA's validation request will. Raises ``PrecheckFailed``.
    """
    edge = registry.edge()
    token = secrets.token_urlsafe(24)
    expected = f"{token}.{secrets.token_urlsafe(32)}"
    hosts = [settings.HOSTYARD_PUBLIC_IPV4]
    if settings.HOSTYARD_PUBLIC_IPV6:
        hosts.append(f"[{settings.HOSTYARD_PUBLIC_IPV6}]")

    edge.add_challenge(token, expected)
    try:
        for host in hosts:
            url = f"http://{host}:{settings.HOSTYARD_EDGE_HTTP_PORT}/.well-known/acme-challenge/{token}"
            _read_token(url, name, expected)
    finally:
        edge.remove_challenge(token)


def _read_token(url: str, name: str, expected: str) -> None:
    try:
        response = requests.get(url, headers={"Host": name}, timeout=10, allow_redirects=False)
    except requests.RequestException as exc:
        raise PrecheckFailed(
            f"The edge did not respond to HTTP requests for {name} at {url} "
            f"({type(exc).__name__}): check that the edge proxy runs and listens on "
            "HOSTYARD_EDGE_HTTP_PORT at every public address."
        ) from exc
    if response.status_code != 200 or response.text.strip() != expected:
        raise PrecheckFailed(
            f"The edge returned HTTP {response.status_code} at {url} for a test token of {name} "
            "instead of the token just written: check the edge's HTTP listener."
        )


# --- internals ----------------------------------------------------------------------------


def _check_budget(certificate: Certificate) -> None:
    now = timezone.now()
    waits = [t for t in (certificate.next_attempt_at, certificate.rate_limited_until) if t]
    until = max(waits) if waits else None
    if until is None or until <= now:
        return
    seconds = (until - now).total_seconds()
    raise OrderDeferred(
        f"No new order for {', '.join(certificate.names)} before {until:%Y-%m-%d %H:%M:%S} UTC "
        f"(last failure: {certificate.last_error or 'none recorded'}).",
        retry_after=seconds,
    )


def _order(certificate: Certificate) -> IssuedCertificate:
    challenge: ChallengeType = "dns-01" if certificate.challenge == "dns-01" else "http-01"
    account_key = acme_account_key()
    Certificate.objects.filter(pk=certificate.pk).update(orders=certificate.orders + 1)
    certificate.orders += 1
    log.info("certificate ordering", certificate=certificate.key, challenge=challenge)
    return registry.acme().issue_certificate(
        names=list(certificate.names), challenge=challenge, account_key_pem=account_key
    )


def _record_failure(certificate: Certificate, error: Exception, *, count: bool) -> None:
    """Store the failure; a counted one (a failed validation) pushes the next order back."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "last_error": str(getattr(error, "message", error))[:1000],
        "last_error_code": str(getattr(error, "code", ""))[:60],
    }
    if count:
        attempts = certificate.failed_attempts + 1
        delay = min(
            settings.HOSTYARD_CERT_RETRY_BASE_SECONDS * 2 ** (attempts - 1),
            settings.HOSTYARD_CERT_RETRY_MAX_SECONDS,
        )
        fields["failed_attempts"] = attempts
        fields["next_attempt_at"] = now + timedelta(seconds=delay)
    if getattr(error, "code", "") == "acme_rate_limited":
        retry_after = getattr(error, "retry_after", None)
        wait = retry_after if retry_after is not None else settings.HOSTYARD_CERT_RETRY_MAX_SECONDS
        fields["rate_limited_until"] = now + timedelta(seconds=wait)
    if certificate.status == CertificateStatus.PENDING and count:
        fields["status"] = CertificateStatus.FAILED

    Certificate.objects.filter(pk=certificate.pk).update(**fields)
    for name, value in fields.items():
        setattr(certificate, name, value)
    log.warning(
        "certificate order failed",
        certificate=certificate.key,
        error=fields["last_error"],
        code=fields["last_error_code"],
        next_attempt_at=str(fields.get("next_attempt_at", "")),
    )


def _store(certificate: Certificate, issued: IssuedCertificate) -> None:
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": CertificateStatus.ISSUED,
        "names": list(issued.names) or list(certificate.names),
        "not_before": issued.not_before,
        "not_after": issued.not_after,
        "fullchain_pem": issued.cert_pem,
        "private_key_encrypted": encrypt_private_key(issued.key_pem),
        "issued_at": now,
        "failed_attempts": 0,
        "next_attempt_at": None,
        "rate_limited_until": None,
        "last_error": "",
        "last_error_code": "",
        "alerted_at": None,
    }
    Certificate.objects.filter(pk=certificate.pk).update(**fields)
    for name, value in fields.items():
        setattr(certificate, name, value)
    log.info(
        "certificate issued",
        certificate=certificate.key,
        names=certificate.names,
        not_after=issued.not_after.isoformat(),
    )


def routed_hostnames(site: Site) -> list[str]:
    """Return the site's platform hostname and its active custom domains."""
    domains = site.domains.filter(status__in=DomainStatus.routed()).values_list("name", flat=True)
    return [site.hostname, *domains]


# --- renewal and expiry alerts --------------------------------------------------------------


def renew_due_certificates() -> dict[str, int]:
    """Renew every issued certificate within ``HOSTYARD_CERT_RENEW_DAYS`` of expiry.

    Each renewal replaces the row's PEMs and the edge entry with the same id, so the
    edge swaps certificates without dropping connections. A failure is recorded on
    its row and does not stop the others. Returns counts by outcome.
    """
    due_before = timezone.now() + timedelta(days=settings.HOSTYARD_CERT_RENEW_DAYS)
    counts = {"renewed": 0, "deferred": 0, "failed": 0}
    due = Certificate.objects.filter(
        status=CertificateStatus.ISSUED, not_after__lte=due_before
    ).select_related("site")
    for certificate in due:
        target = certificate.site.hostname if certificate.site else certificate.names[0]
        try:
            order_certificate(certificate, target=target)
            load_into_edge(certificate)
        except OrderDeferred:
            counts["deferred"] += 1
        except (TransientError, PermanentError) as exc:
            counts["failed"] += 1
            log.error("certificate renewal failed", certificate=certificate.key, error=exc.message)
        else:
            counts["renewed"] += 1
    return counts


def alert_expiring_certificates() -> list[Certificate]:
    """Raise an alert for each certificate expiring within ``HOSTYARD_CERT_ALERT_DAYS``.

    Reads only the certificate rows, so it fires even when renewal never ran. An alert
    is an ERROR log line plus a ``SiteEvent`` (level error) on each affected site: the
    certificate's own site, or every live site for the shared wildcard. Each
    certificate alerts at most once a day (``alerted_at``). Returns the certificates alerted.
    """
    from hosting.models import SiteEvent, SiteStatus

    now = timezone.now()
    expiring = Certificate.objects.filter(
        status=CertificateStatus.ISSUED,
        not_after__lte=now + timedelta(days=settings.HOSTYARD_CERT_ALERT_DAYS),
    ).exclude(alerted_at__gt=now - timedelta(days=1))

    alerted = []
    for certificate in expiring.select_related("site"):
        assert certificate.not_after is not None
        days = (certificate.not_after - now).total_seconds() / 86400
        message = (
            f"The certificate for {', '.join(certificate.names)} expires on "
            f"{certificate.not_after:%Y-%m-%d %H:%M} UTC ({days:.1f} days) and was not renewed. "
            f"Last renewal error: {certificate.last_error or 'no renewal attempt recorded'}."
        )
        if certificate.site is not None:
            sites = [certificate.site]
        else:
            sites = list(Site.objects.filter(status__in=[SiteStatus.RUNNING, SiteStatus.SUSPENDED]))
        SiteEvent.objects.bulk_create(
            SiteEvent(
                site=site,
                kind="certificate_expiring",
                level=SiteEvent.Level.ERROR,
                message=message[:1000],
                data={
                    "certificate": certificate.key,
                    "not_after": certificate.not_after.isoformat(),
                },
            )
            for site in sites
        )
        Certificate.objects.filter(pk=certificate.pk).update(alerted_at=now)
        log.error(
            "certificate expiring without renewal",
            certificate=certificate.key,
            not_after=certificate.not_after.isoformat(),
            days_left=round(days, 1),
            sites=len(sites),
        )
        alerted.append(certificate)
    return alerted
