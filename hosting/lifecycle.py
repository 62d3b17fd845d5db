"""Business rules for a site's life after signup: suspend, restart, change plan, update,
back up, restore, undo a termination and purge.

Every function checks the request against the site's desired state under a row
lock, records the new desired state and opens one operation. Workers do the rest.
A site's operations run one at a time in request order, so a request made while
another operation runs is queued behind it (the API shows ``queued_behind``).
A request the site's state forbids raises ServiceError ``invalid_state`` (409).
"""

import re
from collections.abc import Callable

import structlog
from django.db import transaction
from django.utils import timezone

from hosting.errors import ServiceError
from hosting.models import (
    Backup,
    DesiredStatus,
    Organization,
    Plan,
    Site,
    SiteEvent,
    SiteStatus,
)
from provisioning import quotas
from provisioning.models import Operation, OperationKind, OperationStatus
from provisioning.services import request_operation

log = structlog.get_logger(__name__)

MIB = 1024 * 1024
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class SuspendReason:
    """Reasons for a suspension, stored in ``Site.suspend_reason``."""

    BILLING = "billing"
    QUOTA = "quota"
    STAFF = "staff"
    # Set by the usage scan when a container keeps crashing.
    RESTART_LOOP = "restart_loop"
    ALL = (BILLING, QUOTA, STAFF, RESTART_LOOP)


def _invalid_state(site: Site, action: str, problem: str) -> ServiceError:
    return ServiceError(
        f"Cannot {action} site {site.hostname}: {problem}",
        code="invalid_state",
        status=409,
        extra={"status": site.status, "desired_status": site.desired_status},
    )


def _open(
    *,
    site: Site,
    kind: str,
    action: str,
    check: Callable[[Site], str | None],
    change: Callable[[Site], list[str]] | None = None,
    params: dict | None = None,
    requested_by: str = "",
) -> Operation:
    """Lock the site, check ``check`` (a reason to reject, or None), apply ``change``, open."""
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        problem = check(locked)
        if problem:
            raise _invalid_state(locked, action, problem)
        if change is not None:
            fields = change(locked)
            locked.save(update_fields=[*fields, "updated_at"])
        operation = request_operation(
            site=locked, kind=kind, params=params, requested_by=requested_by
        )
    log.info("site operation requested", site=str(site.uuid), kind=kind, by=requested_by)
    return operation


def _live(site: Site) -> str | None:
    if site.status in (SiteStatus.TERMINATING, SiteStatus.TERMINATED):
        return f"it is {site.status}."
    if site.desired_status == DesiredStatus.TERMINATED:
        return "it is being terminated."
    return None


def _record(site: Site, kind: str, message: str, **data: object) -> None:
    SiteEvent.objects.create(site=site, kind=kind, message=message, data=data)


def _active(site: Site, kind: str) -> Operation | None:
    return site.operations.filter(kind=kind, status__in=OperationStatus.active()).first()


def suspend_site(*, site: Site, reason: str, requested_by: str = "") -> Operation:
    """Stop the site's container and keep it stopped, recording ``reason``.

    ``reason`` is one of ``SuspendReason.ALL``. Idempotent: while a suspend is
    active it is returned instead of a new one. Raises ServiceError
    ``invalid_reason`` (400) for another reason and ``invalid_state`` (409) unless
    the site is running (or suspended and being resumed).
    """
    if reason not in SuspendReason.ALL:
        raise ServiceError(
            f"Suspend reason {reason!r} is not one of {', '.join(SuspendReason.ALL)}.",
            code="invalid_reason",
            field="reason",
        )

    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        pending = _active(locked, OperationKind.SUSPEND)
        if pending is not None:
            return pending
        if locked.status not in (SiteStatus.RUNNING, SiteStatus.SUSPENDED):
            raise _invalid_state(
                locked, "suspend", f"it is {locked.status}; only a running site can be suspended."
            )
        if locked.desired_status != DesiredStatus.RUNNING:
            raise _invalid_state(
                locked,
                "suspend",
                f"it is already {locked.desired_status} (reason: {locked.suspend_reason or '-'}).",
            )
        locked.desired_status = DesiredStatus.SUSPENDED
        locked.suspend_reason = reason
        locked.save(update_fields=["desired_status", "suspend_reason", "updated_at"])
        operation = request_operation(
            site=locked,
            kind=OperationKind.SUSPEND,
            params={"reason": reason},
            requested_by=requested_by,
        )
        _record(
            locked,
            "suspend_requested",
            f"Suspension ({reason}) requested by {requested_by or 'unknown'}.",
            reason=reason,
        )
    log.info("site suspension requested", site=str(site.uuid), reason=reason, by=requested_by)
    return operation


def unsuspend_site(*, site: Site, requested_by: str = "") -> Operation:
    """Start a suspended site again and clear its suspend reason.

    Idempotent: while an unsuspend is active it is returned instead of a new one.
    Raises ServiceError ``invalid_state`` (409) if the site is not suspended.
    """
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        if locked.desired_status != DesiredStatus.SUSPENDED:
            pending = _active(locked, OperationKind.UNSUSPEND)
            if pending is not None:
                return pending
            raise _invalid_state(locked, "unsuspend", "it is not suspended.")
        locked.desired_status = DesiredStatus.RUNNING
        locked.suspend_reason = ""
        locked.save(update_fields=["desired_status", "suspend_reason", "updated_at"])
        operation = request_operation(
            site=locked, kind=OperationKind.UNSUSPEND, requested_by=requested_by
        )
        _record(
            locked, "unsuspend_requested", f"Unsuspend requested by {requested_by or 'unknown'}."
        )
    log.info("site unsuspension requested", site=str(site.uuid), by=requested_by)
    return operation


def _runnable(locked: Site) -> str | None:
    if locked.desired_status == DesiredStatus.SUSPENDED:
        return "it is suspended; unsuspend it first."
    return _live(locked)


def restart_site(*, site: Site, requested_by: str = "") -> Operation:
    """Restart the site's container. Raises ServiceError (409) unless it should run."""
    return _open(
        site=site,
        kind=OperationKind.RESTART,
        action="restart",
        check=_runnable,
        requested_by=requested_by,
    )


def measured_disk_mb(site: Site) -> int:
    """Return the site's disk use in MiB (volume plus kept backups), rounded up.

    The volume is measured now with the engine's ``df()``; if the engine cannot
    measure it, the usage scan's last value is used instead.
    """
    from django.db.models import Sum

    from provisioning.drivers import registry
    from provisioning.drivers.runtime.docker_lifecycle import volume_size_bytes

    volume = volume_size_bytes(registry.runtime(), site_uuid=str(site.uuid))
    if volume is None:
        return quotas.disk_used_mb_of(site)
    backups = site.backups.filter(deleted_at__isnull=True).aggregate(total=Sum("size_bytes"))
    return -(-(volume + (backups["total"] or 0)) // MIB)


def change_plan(*, site: Site, plan: Plan, requested_by: str = "") -> Operation:
    """Move the site to ``plan`` and apply its limits to the running container.

    The data volume is measured with the engine before the checks, so a plan whose
    disk the data does not fit is rejected at once: ServiceError ``quota_exceeded``
    (409) naming the ``disk_mb`` quota. The other quotas are those of
    ``provisioning.quotas.check_plan_change``, checked under the organization's row
    lock. Also raises ``plan_too_small`` (400) if the app needs more memory and
    ``invalid_state`` (409) for the current plan or a terminated site.
    """
    if plan.memory_mb < site.app.min_memory_mb:
        raise ServiceError(
            f"App {site.app.slug!r} needs at least {site.app.min_memory_mb} MiB of memory; "
            f"plan {plan.slug!r} has {plan.memory_mb} MiB. Choose a larger plan.",
            code="plan_too_small",
            field="plan",
        )
    # Measured before any row lock: an engine call must not hold a transaction open.
    disk_used_mb = measured_disk_mb(site)

    def check(locked: Site) -> str | None:
        if locked.plan_id == plan.pk:
            return f"it is already on plan {plan.slug!r}."
        problem = _live(locked)
        if problem is None:
            quotas.check_plan_change(site=locked, new_plan=plan, disk_used_mb=disk_used_mb)
        return problem

    def change(locked: Site) -> list[str]:
        locked.plan = plan
        return ["plan"]

    previous = site.plan.slug
    with transaction.atomic():
        Organization.objects.select_for_update().get(pk=site.organization_id)
        operation = _open(
            site=site,
            kind=OperationKind.CHANGE_PLAN,
            action="change the plan of",
            check=check,
            change=change,
            params={"plan": plan.slug, "previous_plan": previous},
            requested_by=requested_by,
        )
    _record(site, "plan_changed", f"Plan changed from {previous} to {plan.slug}.", plan=plan.slug)
    return operation


def update_site(*, site: Site, version: str, requested_by: str = "") -> Operation:
    """Update the site's app to ``version`` (a tag of the app's image).

    The worker snapshots the volume, replaces the container and waits for health;
    on failure it rolls back to the old image and data. ``Site.app_version``
    changes only when the update succeeded. Raises ServiceError ``invalid_version``
    (400) and ``invalid_state`` (409) for a site that is not running or already on
    ``version``.
    """
    if not VERSION_PATTERN.match(version):
        raise ServiceError(
            f"Version {version!r} is not a valid image tag.",
            code="invalid_version",
            field="version",
        )
    # Filled in under the row lock by ``check``, before the operation is recorded.
    params = {"version": version}

    def check(locked: Site) -> str | None:
        if locked.status != SiteStatus.RUNNING:
            return f"it is {locked.status}; only a running site can be updated."
        queued = (
            locked.operations.filter(kind=OperationKind.UPDATE, status__in=OperationStatus.active())
            .order_by("-id")
            .first()
        )
        if queued is not None and queued.params.get("version") == version:
            return f"an update to version {version} is already queued or running."
        if queued is None and locked.app_version == version:
            return f"it already runs version {version}."
        # The version to roll back to is recorded when the update starts.
        return _runnable(locked)

    return _open(
        site=site,
        kind=OperationKind.UPDATE,
        action="update",
        check=check,
        params=params,
        requested_by=requested_by,
    )


def back_up_site(*, site: Site, requested_by: str = "") -> Operation:
    """Archive the site's data volume now. Raises ServiceError (409) for a terminated site."""
    return _open(
        site=site,
        kind=OperationKind.BACKUP,
        action="back up",
        check=_live,
        requested_by=requested_by,
    )


def restore_backup(*, site: Site, backup: Backup, requested_by: str = "") -> Operation:
    """Replace the site's data with ``backup`` and start it again (unless suspended).

    Raises ServiceError ``backup_missing`` (409) for a deleted backup or one of
    another site, and ``invalid_state`` (409) for a terminated site.
    """
    if backup.site_id != site.pk or backup.deleted_at is not None:
        raise ServiceError(
            f"Backup {backup.uuid} cannot be restored to site {site.hostname}: it was "
            "deleted or belongs to another site.",
            code="backup_missing",
            status=409,
        )
    return _open(
        site=site,
        kind=OperationKind.RESTORE,
        action="restore a backup of",
        check=_live,
        params={"backup": str(backup.uuid)},
        requested_by=requested_by,
    )


def undo_terminate(*, site: Site, requested_by: str = "") -> Operation:
    """Bring a terminated site back from its kept volume, before its purge.

    Raises ServiceError ``invalid_state`` (409) if the site is not terminated, was
    purged or is being purged, and ``quota_exceeded`` (409) if the customer or
    organization has no room for another live site.
    """
    with transaction.atomic():
        # The quota checks hold only under the organization's row lock.
        Organization.objects.select_for_update().get(pk=site.organization_id)
        locked = Site.objects.select_for_update().get(pk=site.pk)
        if locked.status != SiteStatus.TERMINATED:
            raise _invalid_state(locked, "undo the termination of", "it is not terminated.")
        purging = locked.operations.filter(
            kind=OperationKind.PURGE, status__in=OperationStatus.active()
        ).exists()
        if locked.purged_at is not None or purging:
            raise _invalid_state(
                locked, "undo the termination of", "its data was purged or is being purged."
            )
        quotas.check_signup(
            organization=locked.organization, customer=locked.customer, plan=locked.plan
        )
        locked.desired_status = DesiredStatus.RUNNING
        locked.purge_after = None
        locked.terminated_at = None
        locked.save(update_fields=["desired_status", "purge_after", "terminated_at", "updated_at"])
        operation = request_operation(
            site=locked, kind=OperationKind.UNDO_TERMINATE, requested_by=requested_by
        )
    _record(site, "termination_undone", f"Termination undone by {requested_by or 'unknown'}.")
    log.info("site termination undone", site=str(site.uuid))
    return operation


def purge_site(*, site: Site, requested_by: str = "") -> Operation:
    """Remove a terminated site's kept volume and backups for good.

    Idempotent: an active purge is returned instead of a second one. Raises
    ServiceError ``invalid_state`` (409) unless the site is terminated and not purged.
    """
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        active = locked.operations.filter(
            kind=OperationKind.PURGE, status__in=OperationStatus.active()
        ).first()
        if active is not None:
            return active
        if locked.status != SiteStatus.TERMINATED or locked.purged_at is not None:
            raise _invalid_state(locked, "purge", "only a terminated, unpurged site can be purged.")
        operation = request_operation(
            site=locked, kind=OperationKind.PURGE, requested_by=requested_by
        )
    _record(site, "purge_requested", f"Data purge requested by {requested_by or 'unknown'}.")
    log.info("site purge requested", site=str(site.uuid), by=requested_by)
    return operation


def open_due_purges(*, now=None) -> list[Operation]:
    """Open a purge for every terminated site whose retention has ended. Idempotent."""
    now = now or timezone.now()
    due = Site.objects.filter(
        status=SiteStatus.TERMINATED, purged_at__isnull=True, purge_after__lte=now
    )
    opened = []
    for site in due:
        try:
            opened.append(purge_site(site=site, requested_by="retention"))
        except ServiceError as exc:
            log.warning("purge not opened", site=str(site.uuid), error=exc.message)
    return opened
