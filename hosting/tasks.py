"""Celery tasks for custom domains and certificates. They take ids and only call services."""

import structlog
from celery import shared_task

from hosting import domains
from hosting.models import DomainStatus
from provisioning import certificates

log = structlog.get_logger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def check_domain(domain_id: int) -> str:
    """Check a pending domain now and activate it at once if it is verified."""
    domain = domains.check_domain_now(domain_id)
    if domain is not None and domain.status == DomainStatus.VERIFIED:
        domain = domains.activate_domain(domain_id)
    return domain.status if domain is not None else "skipped"


@shared_task(acks_late=True, ignore_result=True)
def detach_domain(domain_id: int) -> bool:
    """Remove a domain marked for removal from the edge and delete it."""
    return domains.detach_domain(domain_id)


@shared_task(ignore_result=True)
def process_domains() -> dict[str, int]:
    """Run due domain checks, activations and removals (celery beat)."""
    return domains.process_domains()


@shared_task(ignore_result=True)
def renew_certificates() -> dict[str, int]:
    """Renew certificates close to expiry and reload them into the edge (celery beat)."""
    counts = certificates.renew_due_certificates()
    log.info("certificate renewal run", **counts)
    return counts


@shared_task(ignore_result=True)
def check_certificate_expiry() -> int:
    """Alert on certificates close to expiry, independently of renewal (celery beat)."""
    return len(certificates.alert_expiring_certificates())
