"""Celery tasks. They take ids, never model instances, and only call services."""

import structlog
from celery import shared_task

from provisioning import services
from provisioning.engine.runner import Outcome
from provisioning.engine.runner import run_operation as run_operation_steps
from provisioning.models import Operation
from provisioning.usage import scan_usage as scan_site_usage

log = structlog.get_logger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_operation(operation_id: int) -> str:
    """Run the operation's remaining steps; safe to deliver more than once."""
    try:
        result = run_operation_steps(operation_id)
    except Operation.DoesNotExist:
        log.warning("operation no longer exists", operation_id=operation_id)
        return "missing"

    if result.outcome is Outcome.RETRY:
        services.enqueue(operation_id, countdown=result.retry_in)
    elif result.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
        site_id = Operation.objects.values_list("site_id", flat=True).get(pk=operation_id)
        services.enqueue_next(site_id)
    return result.outcome.value


@shared_task(ignore_result=True)
def reap_operations() -> int:
    """Re-send operations left behind by dead workers or lost messages."""
    return len(services.reap_operations())


@shared_task(ignore_result=True)
def reconcile() -> int:
    """Open operations for every drift between the sites and the engine."""
    from provisioning.reconciler import reconcile as reconcile_sites

    return len(reconcile_sites().opened)


@shared_task(ignore_result=True)
def open_due_purges() -> int:
    """Open purges for terminated sites whose retention period has ended."""
    from hosting.lifecycle import open_due_purges as open_purges

    return len(open_purges())


@shared_task(ignore_result=True)
def scan_usage() -> int:
    """Measure every site's usage and apply the quota policy; returns the sites scanned."""
    record = scan_site_usage()
    return record.sites if record is not None else 0
