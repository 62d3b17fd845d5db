"""The reconciler: compare the sites' desired state with what the engine holds, and
open an operation for every drift.

One scan makes one engine call (``list_site_containers``) and a fixed number of
database queries, whatever the number of sites. Sites with an active operation are
left alone, because that operation is already changing them. Every repair opened
is logged and recorded as a SiteEvent on its site.

Drift and the operation opened for it:

- a running site without a container: ``repair`` (creates and starts it again);
- a running site whose container is stopped: ``restart``;
- a suspended site whose container runs: ``suspend`` (stops it again);
- a container labelled with this deployment and a site that is not live: a
  ``StrayContainer`` record, and removal once it has been stray for
  ``HOSTYARD_STRAY_GRACE_SECONDS``.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hosting.models import DesiredStatus, Site, SiteEvent, SiteStatus
from provisioning.drivers import registry
from provisioning.drivers.runtime.base import LABEL_ROLE, ContainerState
from provisioning.drivers.runtime.docker_lifecycle import remove_container_by_id
from provisioning.models import Operation, OperationKind, OperationStatus, StrayContainer
from provisioning.services import request_operation

log = structlog.get_logger(__name__)

RECONCILER = "reconciler"
# Engine states in which a container counts as up; "restarting" is the engine's own
# restart policy at work, which a restart operation would only interrupt.
UP_STATES = frozenset({"running", "restarting"})


@dataclass
class ReconcileReport:
    """Findings and actions of one reconciler scan."""

    sites_checked: int = 0
    containers_seen: int = 0
    opened: list[tuple[str, str, str]] = field(default_factory=list)  # (site uuid, kind, drift)
    strays_found: list[str] = field(default_factory=list)
    strays_removed: list[str] = field(default_factory=list)


def _drift(site: Mapping[str, Any], app: ContainerState | None) -> tuple[str, str] | None:
    """Return (operation kind, drift description) for one idle site, or None if in step."""
    if site["status"] == SiteStatus.RUNNING and site["desired_status"] == DesiredStatus.RUNNING:
        if app is None:
            return OperationKind.REPAIR, "container missing"
        if app.state not in UP_STATES:
            return OperationKind.RESTART, f"container {app.state}"
    if (
        site["status"] == SiteStatus.SUSPENDED
        and site["desired_status"] == DesiredStatus.SUSPENDED
        and app is not None
        and app.state in UP_STATES
    ):
        return OperationKind.SUSPEND, f"container {app.state} while suspended"
    return None


def _open_repair(site_id: int, kind: str, drift: str) -> Operation | None:
    """Open ``kind`` for the site unless an operation became active since the scan."""
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site_id)
        if site.operations.filter(status__in=OperationStatus.active()).exists():
            return None
        params = {"drift": drift}
        if kind == OperationKind.SUSPEND:
            params["reason"] = site.suspend_reason
        operation = request_operation(site=site, kind=kind, params=params, requested_by=RECONCILER)
        SiteEvent.objects.create(
            site=site,
            kind="drift_repair",
            level=SiteEvent.Level.WARNING,
            message=f"The reconciler found the {drift} and opened a {kind} operation.",
            data={"drift": drift, "operation": str(operation.uuid)},
        )
    log.warning("drift found, repair opened", site=str(site.uuid), drift=drift, kind=kind)
    return operation


def reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """Scan once and open operations for drift; safe to run concurrently and repeatedly.

    Raises TransientError or PermanentError if the engine cannot be listed; nothing
    is changed then.
    """
    now = now or timezone.now()
    report = ReconcileReport()
    containers = registry.runtime().list_site_containers()
    report.containers_seen = len(containers)

    apps: dict[str, ContainerState] = {}
    others: list[ContainerState] = []
    for container in containers:
        if not container.site_uuid:
            # Not a site's container (e.g. a platform service of this deployment).
            continue
        if container.labels.get(LABEL_ROLE) == "app" and container.site_uuid not in apps:
            apps[container.site_uuid] = container
        else:
            others.append(container)

    live = list(
        Site.objects.exclude(status=SiteStatus.TERMINATED).values(
            "pk", "uuid", "status", "desired_status"
        )
    )
    busy = set(
        Operation.objects.filter(status__in=OperationStatus.active()).values_list(
            "site_id", flat=True
        )
    )
    report.sites_checked = len(live)
    for site in live:
        if site["pk"] in busy:
            continue
        drift = _drift(site, apps.get(str(site["uuid"])))
        if drift is None:
            continue
        kind, description = drift
        if _open_repair(site["pk"], kind, description) is not None:
            report.opened.append((str(site["uuid"]), kind, description))

    live_uuids = {str(site["uuid"]) for site in live}
    busy_uuids = {str(site["uuid"]) for site in live if site["pk"] in busy}
    strays = [c for c in apps.values() if c.site_uuid not in live_uuids]
    # Helper containers belong to an operation; without one running they are left over.
    strays += [c for c in others if c.site_uuid not in busy_uuids]
    _handle_strays(strays, now=now, report=report)
    log.info(
        "reconcile finished",
        sites=report.sites_checked,
        containers=report.containers_seen,
        opened=len(report.opened),
        strays=len(report.strays_found),
        removed=len(report.strays_removed),
    )
    return report


def _handle_strays(strays: list[ContainerState], *, now: datetime, report: ReconcileReport) -> None:
    """Record stray containers, remove those past the grace period, resolve vanished ones."""
    grace = timedelta(seconds=settings.HOSTYARD_STRAY_GRACE_SECONDS)
    seen_ids = [c.container_id for c in strays]
    known = {
        row.container_id: row
        for row in StrayContainer.objects.filter(container_id__in=seen_ids, removed_at__isnull=True)
    }
    labelled = [c.site_uuid for c in strays if _is_uuid(c.site_uuid)]
    sites_by_uuid = {str(site.uuid): site for site in Site.objects.filter(uuid__in=labelled)}

    for container in strays:
        record = known.get(container.container_id)
        if record is None:
            record = _report_stray(container, sites_by_uuid.get(container.site_uuid))
        report.strays_found.append(container.container_id)
        # A grace period of 0 removes strays in the scan that finds them.
        if grace and record.first_seen_at + grace > now:
            continue
        remove_container_by_id(registry.runtime(), container_id=container.container_id)
        StrayContainer.objects.filter(pk=record.pk).update(removed_at=timezone.now())
        report.strays_removed.append(container.container_id)

    StrayContainer.objects.filter(removed_at__isnull=True, resolved_at__isnull=True).exclude(
        container_id__in=seen_ids
    ).update(resolved_at=timezone.now())


def _report_stray(container: ContainerState, site: Site | None) -> StrayContainer:
    record, created = StrayContainer.objects.get_or_create(
        container_id=container.container_id,
        defaults={
            "name": container.name,
            "site_uuid": container.site_uuid,
            "role": container.labels.get(LABEL_ROLE, ""),
            "state": container.state,
        },
    )
    if created:
        log.warning(
            "stray container found",
            container=container.container_id,
            name=container.name,
            site=container.site_uuid,
            grace_seconds=settings.HOSTYARD_STRAY_GRACE_SECONDS,
        )
        if site is not None:
            SiteEvent.objects.create(
                site=site,
                kind="stray_container",
                level=SiteEvent.Level.WARNING,
                message=(
                    f"Container {container.name} carries this site's labels but the site "
                    f"does not own it; it is removed after the grace period."
                ),
                data={"container": container.container_id},
            )
    return record


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
