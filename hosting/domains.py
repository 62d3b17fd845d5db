"""Custom domains: attach, check, activate and detach a customer's own domain names.

The API and the admin only record desired state (``add_domain``, ``remove_domain``)
and send a task once the transaction commits. Workers run the rest: a DNS check
with backoff while the domain is pending, then a certificate and a route once it is
verified. No transaction stays open across the DNS, ACME or edge calls of a check or
an activation. A lost task is harmless: ``process_domains`` runs on a beat and
picks up every domain that is due.
"""

from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from hosting.domain_names import DomainNameError, normalize_domain
from hosting.errors import ServiceError
from hosting.models import Certificate, Domain, DomainStatus, Site, SiteStatus
from hosting.models.domains import InvalidDomainTransition
from provisioning import certificates
from provisioning.domain_check import DomainCheck, check_domain
from provisioning.drivers import registry
from provisioning.errors import PermanentError, TransientError
from provisioning.steps.edge import last_upstream

log = structlog.get_logger(__name__)

# A worker checking or activating a domain keeps it this long before another may try.
CLAIM_SECONDS = 120
# Domains handled per run of ``process_domains``; the rest wait for the next run.
BATCH_SIZE = 100


# --- requests (API, admin) -------------------------------------------------------------


def normalize_or_reject(raw: str) -> str:
    """Normalize ``raw`` or raise ``ServiceError`` (400) naming the field ``domain``."""
    try:
        return normalize_domain(str(raw), platform_domain=settings.HOSTYARD_PLATFORM_DOMAIN)
    except DomainNameError as exc:
        raise ServiceError(exc.message, code=exc.code, field="domain") from exc


def add_domain(*, site: Site, raw_name: str) -> tuple[Domain, bool]:
    """Attach a domain to ``site`` and send its first check; return it and whether it is new.

    The name is normalized before anything is stored. Adding a name the site already
    has returns the existing row. Raises ``ServiceError``: 400 for an invalid name or
    one inside the platform zone, 409 ``domain_taken`` when another site uses it,
    409 ``invalid_state`` for a terminated site.
    """
    name = normalize_or_reject(raw_name)
    if site.status in SiteStatus.final():
        raise ServiceError(
            f"Site {site.hostname} is terminated: domains cannot be added to it.",
            code="invalid_state",
            status=409,
        )

    existing = Domain.objects.filter(name=name).select_related("site").first()
    if existing is not None:
        return _existing_or_taken(existing, site, name), False

    now = timezone.now()
    window = timedelta(seconds=settings.HOSTYARD_DOMAIN_CHECK_WINDOW_SECONDS)
    try:
        with transaction.atomic():
            domain = Domain.objects.create(
                site=site,
                name=name,
                status_reason="Waiting for the first DNS check.",
                next_check_at=now,
                check_deadline=now + window,
            )
            transaction.on_commit(lambda: send_task("check_domain", domain.pk))
    except IntegrityError:
        # Another request stored the same name between the lookup and the insert.
        existing = Domain.objects.select_related("site").get(name=name)
        return _existing_or_taken(existing, site, name), False

    log.info("domain added", site=str(site.uuid), domain=name)
    return domain, True


def _existing_or_taken(existing: Domain, site: Site, name: str) -> Domain:
    if existing.site_id != site.pk:
        raise ServiceError(
            f"The domain {name} is already used by another site: remove it there first.",
            code="domain_taken",
            status=409,
            field="domain",
        )
    if existing.status == DomainStatus.REMOVING:
        raise ServiceError(
            f"The domain {name} is being removed from this site: add it again once it is gone.",
            code="invalid_state",
            status=409,
            field="domain",
        )
    return existing


def remove_domain(*, site: Site, raw_name: str) -> Domain:
    """Mark the site's domain for removal; a worker removes it from the edge, then the row.

    Idempotent. Raises ``ServiceError`` 400 for an invalid name and 404 when the site
    has no such domain.
    """
    name = normalize_or_reject(raw_name)
    domain = Domain.objects.filter(site=site, name=name).first()
    if domain is None:
        raise ServiceError(
            f"Site {site.hostname} has no domain {name}.", code="not_found", status=404
        )
    if domain.status != DomainStatus.REMOVING:
        with transaction.atomic():
            domain.transition(
                target=DomainStatus.REMOVING,
                expected=[s for s in DomainStatus.values if s != DomainStatus.REMOVING],
                reason="Removal requested.",
            )
            transaction.on_commit(lambda: send_task("detach_domain", domain.pk))
        log.info("domain removal requested", site=str(site.uuid), domain=name)
    return domain


def send_task(name: str, domain_id: int) -> None:
    """Send a domain task; if the broker is down, ``process_domains`` picks it up later."""
    from hosting import tasks

    try:
        getattr(tasks, name).delay(domain_id)
    except OperationalError as exc:
        log.error("could not send domain task", task=name, domain_id=domain_id, error=str(exc))


# --- worker: checks ---------------------------------------------------------------------


def check_domain_now(domain_id: int) -> Domain | None:
    """Check a pending (or conflicting) domain's DNS and record exactly what was found.

    Moves it to verified when it points at the platform, keeps it pending with the
    reason and a later ``next_check_at`` (exponential backoff) otherwise, and fails
    it once ``check_deadline`` has passed. Returns None if the domain is gone or
    another worker is checking it.
    """
    domain = _claim(domain_id, DomainStatus.checking())
    if domain is None:
        return None
    site = domain.site

    result = check_domain(
        domain.name,
        expected_ipv4=settings.HOSTYARD_PUBLIC_IPV4,
        expected_ipv6=settings.HOSTYARD_PUBLIC_IPV6,
        platform_hostname=site.hostname,
        resolvers=certificates.check_resolvers(),
        caa_identities=[settings.HOSTYARD_ACME_CAA_IDENTITY],
    )

    now = timezone.now()
    attempts = domain.check_attempts + 1
    recorded: dict[str, Any] = {
        "found": result.found,
        "checked_at": now,
        "check_attempts": attempts,
    }
    try:
        if result.ok:
            domain.transition(
                target=DomainStatus.VERIFIED,
                expected=DomainStatus.checking(),
                reason=result.reason,
                verified_at=now,
                next_check_at=now,
                **recorded,
            )
            log.info("domain verified", site=str(site.uuid), domain=domain.name)
            return domain

        status, reason = _failure(domain, result)
        if domain.check_deadline is not None and now >= domain.check_deadline:
            hours = settings.HOSTYARD_DOMAIN_CHECK_WINDOW_SECONDS / 3600
            domain.transition(
                target=DomainStatus.FAILED,
                expected=DomainStatus.checking(),
                reason=f"Not pointed at the platform within {hours:g} hours: {reason}",
                next_check_at=None,
                **recorded,
            )
            log.warning("domain check window ended", site=str(site.uuid), domain=domain.name)
            return domain

        domain.transition(
            target=status,
            expected=DomainStatus.checking(),
            reason=reason,
            next_check_at=now + timedelta(seconds=check_backoff(attempts)),
            **recorded,
        )
        log.info("domain not pointed yet", domain=domain.name, reason=reason, attempt=attempts)
    except InvalidDomainTransition as exc:
        # The domain was removed meanwhile; the removal wins.
        log.info("domain check result dropped", domain=domain.name, reason=str(exc))
    return domain


def check_backoff(attempts: int) -> float:
    """Seconds until the next check after ``attempts`` checks: doubling, capped."""
    base = settings.HOSTYARD_DOMAIN_CHECK_BASE_SECONDS
    return float(min(base * 2 ** max(attempts - 1, 0), settings.HOSTYARD_DOMAIN_CHECK_MAX_SECONDS))


def _failure(domain: Domain, result: DomainCheck) -> tuple[str, str]:
    """Return the status and the customer-facing reason for a failed check."""
    zone = certificates.platform_zone()
    chain = result.found.get("cname") or []
    others = [name for name in chain if name.endswith("." + zone) and name != domain.site.hostname]
    if others:
        return DomainStatus.CONFLICT, (
            f"{domain.name} is a CNAME to {others[0]}, which is another site's hostname: "
            f"point it at {domain.site.hostname}."
        )
    addresses = result.found.get("a", []) + result.found.get("aaaa", [])
    if addresses and not chain and not result.found.get("caa"):
        return (
            DomainStatus.PENDING,
            f"{domain.name} resolves to {', '.join(addresses)}. {result.reason}",
        )
    return DomainStatus.PENDING, result.reason


# --- worker: activation and removal -----------------------------------------------------


def activate_domain(domain_id: int) -> Domain | None:
    """Certify and route a verified domain, then mark it active. Safe to repeat.

    Sets a later ``next_check_at`` while the site is not running or the order budget
    defers the order. Moves the domain back to pending, and places no order, when a
    pre-order check finds that it no longer points at the platform. Returns None if the
    domain is gone or another worker has claimed it.
    """
    domain = _claim(domain_id, [DomainStatus.VERIFIED])
    if domain is None:
        return None
    site = domain.site
    base = settings.HOSTYARD_DOMAIN_CHECK_BASE_SECONDS

    if site.status != SiteStatus.RUNNING:
        _retry_later(domain, f"Waiting for site {site.hostname} to run.", base)
        return domain

    try:
        certificate = _certify_and_route(domain)
    except certificates.PrecheckFailed as exc:
        log.info("domain precheck failed", domain=domain.name, reason=exc.reason)
        _move_if_still_verified(
            domain,
            target=DomainStatus.PENDING,
            reason=exc.reason,
            found=exc.found,
            next_check_at=timezone.now() + timedelta(seconds=base),
        )
        return domain
    except TransientError as exc:
        _retry_later(domain, exc.message, exc.retry_after or base)
        log.warning("domain activation will retry", domain=domain.name, error=exc.message)
        return domain
    except PermanentError as exc:
        # The order budget decides when the next order for this name may be placed.
        next_order = Certificate.objects.filter(key=f"domain:{domain.name}").values_list(
            "next_attempt_at", flat=True
        )
        delay = base
        if next_order and next_order[0]:
            delay = max((next_order[0] - timezone.now()).total_seconds(), base)
        _retry_later(domain, exc.message, delay)
        log.error("domain activation failed", domain=domain.name, error=exc.message)
        return domain

    moved = _move_if_still_verified(
        domain,
        target=DomainStatus.ACTIVE,
        reason=_active_reason(certificate),
        certificate=certificate,
        activated_at=timezone.now(),
        next_check_at=None,
    )
    if not moved and registry.edge_enabled():
        # Removal was requested meanwhile, and the route may carry the name again.
        registry.edge().ensure_route(
            site_id=str(site.uuid),
            hostnames=certificates.routed_hostnames(site),
            upstream=last_upstream(site),
        )
    if moved:
        log.info("domain active", site=str(site.uuid), domain=domain.name)
    return domain


def _certify_and_route(domain: Domain) -> Certificate | None:
    """Order or reuse the domain's certificate and add the name to the site's route."""
    if not registry.edge_enabled():
        return None
    site = domain.site
    spec = certificates.domain_certificate_spec(domain)
    certificate = certificates.ensure_certificate(**spec, target=site.hostname)
    hostnames = [*certificates.routed_hostnames(site), domain.name]
    registry.edge().ensure_route(
        site_id=str(site.uuid), hostnames=hostnames, upstream=last_upstream(site)
    )
    return certificate


def _active_reason(certificate: Certificate | None) -> str:
    if certificate is None:
        return "Verified. No edge proxy is configured, so routing and TLS are managed elsewhere."
    if certificate.not_after is None:
        return "Served over HTTPS."
    return f"Served over HTTPS with a certificate valid until {certificate.not_after:%Y-%m-%d}."


def _move_if_still_verified(domain: Domain, *, target: str, reason: str, **fields: Any) -> bool:
    """Move a verified domain to ``target``; return False if a removal request came first."""
    try:
        domain.transition(target=target, expected=[DomainStatus.VERIFIED], reason=reason, **fields)
    except InvalidDomainTransition:
        log.info("domain removed during activation", domain=domain.name)
        return False
    return True


def detach_domain(domain_id: int) -> bool:
    """Remove a domain marked for removal from the edge, then delete its row. Idempotent.

    Returns False if the domain is gone or not marked for removal.
    """
    domain = (
        Domain.objects.select_related("site")
        .filter(pk=domain_id, status=DomainStatus.REMOVING)
        .first()
    )
    if domain is None:
        return False
    site = domain.site

    if registry.edge_enabled() and site.status in (SiteStatus.RUNNING, SiteStatus.SUSPENDED):
        hostnames = certificates.routed_hostnames(site)
        try:
            upstream = last_upstream(site)
        except PermanentError:
            upstream = ""
        edge = registry.edge()
        if upstream:
            edge.ensure_route(site_id=str(site.uuid), hostnames=hostnames, upstream=upstream)
        if site.status == SiteStatus.SUSPENDED:
            edge.set_suspended(site_id=str(site.uuid), hostnames=hostnames, suspended=True)
    for certificate in Certificate.objects.filter(key=f"domain:{domain.name}"):
        certificates.remove_certificate(certificate)

    Domain.objects.filter(pk=domain.pk, status=DomainStatus.REMOVING).delete()
    log.info("domain removed", site=str(site.uuid), domain=domain.name)
    return True


def process_domains() -> dict[str, int]:
    """Run every due check, activation and removal, up to ``BATCH_SIZE`` of each."""
    now = timezone.now()
    due = Domain.objects.filter(next_check_at__lte=now).order_by("next_check_at")
    counts = {"checked": 0, "activated": 0, "removed": 0}

    for pk in due.filter(status__in=DomainStatus.checking()).values_list("pk", flat=True)[
        :BATCH_SIZE
    ]:
        check_domain_now(pk)
        counts["checked"] += 1
    for pk in due.filter(status=DomainStatus.VERIFIED).values_list("pk", flat=True)[:BATCH_SIZE]:
        domain = activate_domain(pk)
        counts["activated"] += int(domain is not None and domain.status == DomainStatus.ACTIVE)
    removing = Domain.objects.filter(status=DomainStatus.REMOVING).values_list("pk", flat=True)
    for pk in removing[:BATCH_SIZE]:
        counts["removed"] += int(detach_domain(pk))
    return counts


def _claim(domain_id: int, statuses: list[str]) -> Domain | None:
    """Take a domain in ``statuses`` for ``CLAIM_SECONDS``; None if missing or taken."""
    now = timezone.now()
    domain = Domain.objects.select_related("site").filter(pk=domain_id).first()
    if domain is None or domain.status not in statuses:
        return None
    if domain.next_check_at is not None and domain.next_check_at > now:
        return None
    # Conditional on the value read, so of two workers only one takes the domain.
    free = Domain.objects.filter(pk=domain_id, status=domain.status)
    if domain.next_check_at is not None:
        free = free.filter(next_check_at=domain.next_check_at)
    if not free.update(next_check_at=now + timedelta(seconds=CLAIM_SECONDS)):
        return None
    domain.next_check_at = now + timedelta(seconds=CLAIM_SECONDS)
    return domain


def _retry_later(domain: Domain, reason: str, delay: float) -> None:
    Domain.objects.filter(pk=domain.pk, status=domain.status).update(
        status_reason=reason[:1000],
        next_check_at=timezone.now() + timedelta(seconds=delay),
        updated_at=timezone.now(),
    )
    domain.status_reason = reason[:1000]
