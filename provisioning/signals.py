"""Worker start-up: take back operations that a killed worker on this host left running."""

import structlog
from celery.signals import worker_ready

log = structlog.get_logger(__name__)


@worker_ready.connect
def reap_on_start(**_: object) -> None:
    from provisioning.services import reap_operations

    sent = reap_operations()
    if sent:
        log.info("worker start-up re-sent operations", count=len(sent))
