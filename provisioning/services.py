"""Open operations and hand them to workers.

API views, admin actions, management commands and the reconciler all change a
site through ``request_operation``; none of them touches Docker, DNS or ACME.
"""

from datetime import timedelta
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from hosting.models import Site
from provisioning.engine.kinds import KINDS
from provisioning.engine.runner import worker_identity
from provisioning.models import Operation, OperationStatus, OperationStep

log = structlog.get_logger(__name__)

# A queued operation with no retry time that is older than this lost its task message.
LOST_MESSAGE_SECONDS = 30


def request_operation(
    *, site: Site, kind: str, params: dict[str, Any] | None = None, requested_by: str = ""
) -> Operation:
    """Record an operation with its steps; its task is sent once the transaction commits."""
    policy = KINDS[kind]
    with transaction.atomic():
        operation = Operation.objects.create(
            site=site, kind=kind, params=params or {}, requested_by=requested_by
        )
        OperationStep.objects.bulk_create(
            OperationStep(operation=operation, position=index, name=name)
            for index, name in enumerate(policy.steps, start=1)
        )
        transaction.on_commit(lambda: enqueue(operation.pk))
    log.info("operation requested", site=str(site.uuid), operation=str(operation.uuid), kind=kind)
    return operation


def enqueue(operation_id: int, *, countdown: float | None = None) -> None:
    """Send the operation's task; if the broker is down, the reaper sends it later."""
    from provisioning.tasks import run_operation

    try:
        run_operation.apply_async(args=[operation_id], countdown=countdown)
    except OperationalError as exc:
        log.error("could not send operation task", operation_id=operation_id, error=str(exc))


def enqueue_next(site_id: int) -> None:
    """Send the site's next queued operation, once the one before it has finished."""
    following = (
        Operation.objects.filter(site_id=site_id, status=OperationStatus.QUEUED)
        .order_by("id")
        .values_list("pk", flat=True)
        .first()
    )
    if following is not None:
        enqueue(following)


def cancel_unstarted(*, site: Site, kind: str) -> int:
    """Cancel the site's queued operations of ``kind`` that never started."""
    return Operation.objects.filter(
        site=site, kind=kind, status=OperationStatus.QUEUED, started_at__isnull=True
    ).update(status=OperationStatus.CANCELLED, finished_at=timezone.now())


def _holder_is_dead_here(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != worker_identity().rpartition(":")[0] or not pid.isdigit():
        return False
    try:
        import os

        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap_operations() -> list[int]:
    """Re-send operations whose worker died or whose task message was lost.

    An operation leased by a process of this host that no longer exists is taken back
    at once. One leased elsewhere is taken back when its lease runs out.
    Returns the ids sent.
    """
    now = timezone.now()
    sent: list[int] = []

    running = Operation.objects.filter(status=OperationStatus.RUNNING).values_list(
        "pk", "lease_owner", "lease_expires_at"
    )
    for pk, owner, expires in running:
        dead = _holder_is_dead_here(owner)
        if not dead and (expires is None or expires > now):
            continue
        taken_back = Operation.objects.filter(
            pk=pk, status=OperationStatus.RUNNING, lease_owner=owner
        ).update(status=OperationStatus.QUEUED, lease_owner="", lease_expires_at=None)
        if taken_back:
            log.warning("operation taken back from its worker", operation_id=pk, owner=owner)
            sent.append(pk)

    lost_before = now - timedelta(seconds=LOST_MESSAGE_SECONDS)
    waiting = Operation.objects.filter(status=OperationStatus.QUEUED).filter(
        next_attempt_at__lte=lost_before
    ) | Operation.objects.filter(
        status=OperationStatus.QUEUED, next_attempt_at__isnull=True, created_at__lte=lost_before
    )
    sent.extend(waiting.values_list("pk", flat=True))

    for pk in dict.fromkeys(sent):
        enqueue(pk)
    return sent
