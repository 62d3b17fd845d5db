"""Operation kinds of a site's life after its creation: suspend, update, back up, purge."""

import structlog

from hosting.models import Site, SiteStatus
from hosting.models.sites import InvalidTransition
from provisioning.engine.kinds import KindPolicy, _move, _suspended
from provisioning.models import Operation, OperationKind, StepStatus

log = structlog.get_logger(__name__)

# The edge serves the suspended page before the container stops, so visitors never
# get a connection error. On unsuspend, edge_resume follows the health check and
# points the route at the container's possibly new address.
SUSPEND_STEPS = ["edge_suspend", "stop_container"]
UNSUSPEND_STEPS = ["create_container", "start_container", "wait_healthy", "edge_resume"]
# A recreated container has a new address, so the route follows the health check.
CREATE_STEPS = [
    "create_volume",
    "create_container",
    "start_container",
    "wait_healthy",
    "publish_dns",
    "issue_certificate",
    "configure_route",
    "verify_https",
]
REPAIR_STEPS = [
    "create_volume",
    "create_container",
    "start_container",
    "wait_healthy",
    "configure_route",
]

UPDATE_STEPS = [
    "check_update_image",
    "stop_for_update",
    "snapshot_volume",
    "replace_container",
    "start_container",
    "wait_healthy",
    "configure_route",
    "record_version",
]


def _latest(site: Site, kind: str) -> Operation | None:
    return Operation.objects.filter(site=site, kind=kind).order_by("-id").first()


def _current_update(site: Site) -> Operation | None:
    """Return the update that started last: the one running now, or the one that just ended.

    Later updates may already be queued, so the newest update row is not the right one.
    """
    return (
        Operation.objects.filter(site=site, kind=OperationKind.UPDATE, started_at__isnull=False)
        .order_by("-started_at", "-id")
        .first()
    )


def _updating(site: Site, reason: str) -> None:
    operation = _current_update(site)
    version = operation.params.get("version", "?") if operation else "?"
    _move(SiteStatus.RUNNING, [SiteStatus.RUNNING])(site, f"Updating to version {version}.")


def _update_failed(site: Site, reason: str) -> None:
    """Keep the site running on its old version, or mark it failed if the rollback failed."""
    operation = _current_update(site)
    params = operation.params if operation else {}
    undo_errors = (
        operation.steps.filter(status=StepStatus.SUCCEEDED, result__has_key="undo_error").exists()
        if operation
        else False
    )
    version, previous = params.get("version", "?"), params.get("previous_version", "?")
    if undo_errors:
        target = SiteStatus.FAILED
        message = f"Update to {version} failed ({reason}) and the rollback to {previous} failed."
    else:
        target = SiteStatus.RUNNING
        message = f"Update to {version} failed ({reason}); rolled back to {previous}."
    try:
        site.transition(target=target, expected=[SiteStatus.RUNNING], reason=message[:500])
    except InvalidTransition as exc:
        log.info("site transition skipped", site=str(site.uuid), reason=str(exc))


LIFECYCLE_KINDS: dict[str, KindPolicy] = {
    OperationKind.SUSPEND: KindPolicy(
        steps=SUSPEND_STEPS,
        on_success=_suspended,
    ),
    OperationKind.UNSUSPEND: KindPolicy(
        steps=UNSUSPEND_STEPS,
        on_success=_move(SiteStatus.RUNNING, [SiteStatus.SUSPENDED, SiteStatus.RUNNING]),
    ),
    OperationKind.RESTART: KindPolicy(
        steps=["restart_container", "wait_healthy", "configure_route"]
    ),
    OperationKind.CHANGE_PLAN: KindPolicy(steps=["apply_plan_limits"]),
    OperationKind.UPDATE: KindPolicy(
        steps=UPDATE_STEPS,
        on_start=_updating,
        on_success=_move(SiteStatus.RUNNING, [SiteStatus.RUNNING]),
        on_failure=_update_failed,
        compensate=True,
    ),
    OperationKind.BACKUP: KindPolicy(steps=["snapshot_volume"]),
    OperationKind.RESTORE: KindPolicy(
        steps=["remove_container", "restore_volume", "create_container", "resume_unless_suspended"],
    ),
    OperationKind.UNDO_TERMINATE: KindPolicy(
        steps=CREATE_STEPS,
        on_start=_move(SiteStatus.PROVISIONING, [SiteStatus.TERMINATED, SiteStatus.PROVISIONING]),
        on_success=_move(SiteStatus.RUNNING, [SiteStatus.PROVISIONING]),
        on_failure=_move(SiteStatus.FAILED, [SiteStatus.PROVISIONING]),
    ),
    OperationKind.PURGE: KindPolicy(steps=["remove_container", "purge_volume", "purge_backups"]),
    OperationKind.REPAIR: KindPolicy(steps=REPAIR_STEPS),
}
