"""The usage scan: measure every site, keep samples, and apply the quota policy.

Policy, per site on each scan:

- Disk (data volume plus backups) at or above each of
  ``HOSTYARD_DISK_WARNING_PERCENTS`` of the plan's quota: one warning ``SiteEvent``
  and notification per crossing. Falling back under a threshold re-arms it.
- Disk above the quota: an error event at once, and after
  ``HOSTYARD_DISK_GRACE_SECONDS`` the site is suspended with reason ``quota``.
  A site suspended for quota is unsuspended by the first scan that finds it under
  its quota again (data deleted, or a larger plan).
- OOM kills reported by the engine: counted, recorded as a warning event.
- A container whose ``RestartCount`` reached ``HOSTYARD_RESTART_LOOP_COUNT``: the
  site is suspended with reason ``restart_loop``, which stops the container, and
  stays so until staff unsuspend it.

Suspensions go through ``hosting.services.suspend_site``; the scan itself never
changes a container.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from hosting import services
from hosting.errors import ServiceError
from hosting.models import DesiredStatus, Site, SiteEvent, SiteStatus
from provisioning.drivers import registry
from provisioning.drivers.runtime.docker_usage import ContainerUsage, DockerUsageProbe
from provisioning.notifications import Notification, send
from provisioning.usage_models import MIB, SiteUsage, UsageSample, UsageScan

log = structlog.get_logger(__name__)

# Key of the PostgreSQL advisory lock that lets one scan run at a time.
SCAN_LOCK_KEY = 0x686F7374_75736167  # "hostusag"
QUOTA_REASON = "quota"
RESTART_LOOP_REASON = "restart_loop"
SCANNER = "usage-scan"
USAGE_FIELDS = [
    "measured_at",
    "volume_bytes",
    "backup_bytes",
    "memory_bytes",
    "container_state",
    "container_id",
    "oom_counter",
    "disk_warning_percent",
    "over_quota_since",
    "oom_kills",
    "last_oom_at",
    "restart_count",
    "restart_loop_at",
]


def probe() -> DockerUsageProbe:
    return DockerUsageProbe(
        registry.runtime(),
        memory_source=settings.HOSTYARD_USAGE_MEMORY_SOURCE,
        cgroup_root=settings.HOSTYARD_CGROUP_ROOT,
    )


def backup_sizes(directory: str) -> dict[str, int]:
    """Return bytes per site uuid stored under the backup directory.

    An entry counts for a site when its name starts with the site's uuid: a
    directory ``<uuid>/`` (walked recursively) or a file ``<uuid>-<anything>``.
    Returns an empty mapping when the directory is unset or does not exist.
    """
    if not directory:
        return {}
    root = Path(directory)
    if not root.is_dir():
        return {}

    sizes: dict[str, int] = {}
    for entry in root.iterdir():
        site_uuid = entry.name[:36]
        if len(site_uuid) != 36:
            continue
        sizes[site_uuid] = sizes.get(site_uuid, 0) + _tree_bytes(entry)
    return sizes


def _tree_bytes(path: Path) -> int:
    try:
        if path.is_symlink():
            return 0
        if path.is_file():
            return path.stat().st_size
        return sum(_tree_bytes(child) for child in path.iterdir())
    except OSError:
        return 0


@dataclass
class SiteScan:
    """One site in one scan: its usage row, the container seen and new OOM kills."""

    site: Site
    usage: SiteUsage
    container: ContainerUsage | None
    oom_kills: int
    now: datetime


@contextmanager
def scan_lock() -> Iterator[bool]:
    """Hold a session-level advisory lock while the block runs; yield False if taken.

    On databases other than PostgreSQL (the SQLite quickstart, one worker) it always
    yields True. No transaction stays open while the lock is held.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [SCAN_LOCK_KEY])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [SCAN_LOCK_KEY])


def scan_usage() -> UsageScan | None:
    """Measure every live site once, store a sample each, and apply the quota policy.

    Safe to run again at any time: warnings fire once per crossing, and suspend and
    unsuspend requests are idempotent. Returns None, doing nothing, while another
    scan runs. Raises TransientError if the engine is unreachable, before any
    sample, event or operation is written.
    """
    with scan_lock() as acquired:
        if not acquired:
            log.info("usage scan skipped: another scan is running")
            return None
        return _scan()


def _scan() -> UsageScan:
    started = time.monotonic()
    previous = UsageScan.objects.filter(finished_at__isnull=False).first()
    sites = _live_sites()
    watched = {str(site.uuid) for site in sites if site.usage.restart_count > 0}

    engine = probe().measure(
        events_since_ns=previous.events_until_ns if previous else 0, inspect_sites=watched
    )
    backups = backup_sizes(getattr(settings, "HOSTYARD_BACKUP_DIR", ""))

    now = timezone.now()
    notifications: list[Notification] = []
    samples: list[UsageSample] = []
    for site in sites:
        key = str(site.uuid)
        container = engine.containers.get(key)
        scan = SiteScan(
            site=site,
            usage=site.usage,
            container=container,
            oom_kills=_new_oom_kills(site.usage, container, engine.oom_events.get(key, 0)),
            now=now,
        )
        volume_bytes = engine.volume_bytes.get(key, 0)
        _measure(scan, volume_bytes=volume_bytes, backup_bytes=backups.get(key, 0))
        samples.append(_sample(scan))
        notifications.extend(_apply_policy(scan))

    save_usage([site.usage for site in sites])
    UsageSample.objects.bulk_create(samples, batch_size=500)
    prune_samples(keep=settings.HOSTYARD_USAGE_SAMPLES_KEPT)
    record = UsageScan.objects.create(
        started_at=now,
        finished_at=timezone.now(),
        sites=len(sites),
        duration_ms=int((time.monotonic() - started) * 1000),
        engine_calls=engine.engine_calls,
        events_until_ns=engine.events_until_ns,
    )
    log.info(
        "usage scanned",
        sites=len(sites),
        duration_ms=record.duration_ms,
        engine_calls=engine.engine_calls,
        notifications=len(notifications),
    )
    send(notifications)
    return record


def save_usage(rows: list[SiteUsage]) -> None:
    """Write the scanned fields of every row with one parameterised UPDATE, run for each row.

    ``bulk_update`` builds one CASE expression per field and row. That took about
    4 s for 1,000 rows in bench/usage_scan.py, and this takes about 0.1 s.
    """
    if not rows:
        return
    fields = [field for field in SiteUsage._meta.concrete_fields if field.name in USAGE_FIELDS]
    table = connection.ops.quote_name(SiteUsage._meta.db_table)
    assignments = ", ".join(
        f"{connection.ops.quote_name(str(field.column))} = %s" for field in fields
    )
    statement = f"UPDATE {table} SET {assignments} WHERE id = %s"  # noqa: S608 - names from the model
    params = [
        [field.get_db_prep_save(getattr(row, field.attname), connection) for field in fields]
        + [row.pk]
        for row in rows
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(statement, params)


def _live_sites() -> list[Site]:
    """Return every site that owns infrastructure, each with its usage row."""
    statuses = [status for status in SiteStatus.live() if status != SiteStatus.TERMINATING]
    sites = list(
        Site.objects.filter(status__in=statuses).select_related("plan", "organization", "usage")
    )
    missing = [site for site in sites if not hasattr(site, "usage")]
    created = SiteUsage.objects.bulk_create(
        [SiteUsage(site=site) for site in missing], ignore_conflicts=True
    )
    if created:
        rows = {usage.site_id: usage for usage in SiteUsage.objects.filter(site__in=missing)}
        for site in missing:
            site.usage = rows[site.pk]
    return sites


def _new_oom_kills(usage: SiteUsage, container: ContainerUsage | None, events: int) -> int:
    """Return OOM kills since the previous scan, and remember the cgroup counter.

    Both sources see the same kills, so the larger count wins. The cgroup counter
    misses kills that ended the container before a restart reset its cgroup; the
    events miss whatever the engine's short event buffer dropped.
    """
    if container is None or container.oom_counter is None:
        return events
    previous = usage.oom_counter if usage.container_id == container.container_id else 0
    counter = container.oom_counter
    usage.oom_counter = counter
    # A smaller counter means a new cgroup (the container was re-created or restarted).
    from_cgroup = counter - previous if counter >= previous else counter
    return max(from_cgroup, events)


def _measure(scan: SiteScan, *, volume_bytes: int, backup_bytes: int) -> None:
    usage, container = scan.usage, scan.container
    usage.measured_at = scan.now
    if volume_bytes >= 0:
        usage.volume_bytes = volume_bytes
    usage.backup_bytes = backup_bytes
    usage.container_state = container.state if container else ""
    usage.container_id = container.container_id if container else ""
    usage.memory_bytes = container.memory_bytes if container else None
    if container is None:
        usage.restart_count = 0
    elif container.inspected:
        usage.restart_count = container.restart_count


def _sample(scan: SiteScan) -> UsageSample:
    usage = scan.usage
    return UsageSample(
        site=scan.site,
        measured_at=scan.now,
        volume_bytes=usage.volume_bytes,
        backup_bytes=usage.backup_bytes,
        memory_bytes=usage.memory_bytes,
        container_state=usage.container_state,
        restart_count=usage.restart_count,
        oom_kills=scan.oom_kills,
    )


def _apply_policy(scan: SiteScan) -> list[Notification]:
    notifications = _disk_policy(scan)
    notifications.extend(_oom_policy(scan))
    notifications.extend(_restart_policy(scan))
    return notifications


def _event(scan: SiteScan, *, kind: str, level: str, message: str, **data: object) -> Notification:
    """Record a SiteEvent and return the matching notification."""
    site = scan.site
    SiteEvent.objects.create(site=site, kind=kind, level=level, message=message, data=data)
    return Notification(
        event=kind,
        site_uuid=str(site.uuid),
        hostname=site.hostname,
        organization=site.organization.slug,
        message=message,
        data=data,
    )


def disk_percent(usage: SiteUsage, disk_mb: int) -> float:
    return usage.disk_bytes * 100 / (disk_mb * MIB)


def _disk_policy(scan: SiteScan) -> list[Notification]:
    site, usage, now = scan.site, scan.usage, scan.now
    limit_mb = site.plan.disk_mb
    percent = disk_percent(usage, limit_mb)
    used_mb = round(usage.disk_bytes / MIB, 2)
    facts: dict[str, object] = {
        "used_mb": used_mb,
        "limit_mb": limit_mb,
        "percent": round(percent, 1),
    }
    notifications: list[Notification] = []

    thresholds = sorted(settings.HOSTYARD_DISK_WARNING_PERCENTS)
    for threshold in thresholds:
        if usage.disk_warning_percent < threshold <= percent:
            message = (
                f"Disk use of {site.hostname} reached {percent:.0f}% of its {limit_mb} MiB "
                f"quota ({used_mb} MiB)."
            )
            notifications.append(
                _event(
                    scan,
                    kind="disk_warning",
                    level=SiteEvent.Level.WARNING,
                    message=message,
                    threshold=threshold,
                    **facts,
                )
            )
    usage.disk_warning_percent = max((t for t in thresholds if t <= percent), default=0)

    if usage.disk_bytes > limit_mb * MIB:
        if usage.over_quota_since is None:
            usage.over_quota_since = now
            grace = settings.HOSTYARD_DISK_GRACE_SECONDS
            message = (
                f"Disk use of {site.hostname} is above its {limit_mb} MiB quota ({used_mb} MiB); "
                f"the site is suspended unless it falls under the quota within {grace:.0f} s."
            )
            notifications.append(
                _event(
                    scan,
                    kind="disk_quota_exceeded",
                    level=SiteEvent.Level.ERROR,
                    message=message,
                    **facts,
                )
            )
        elapsed = (now - usage.over_quota_since).total_seconds()
        if elapsed >= settings.HOSTYARD_DISK_GRACE_SECONDS:
            notifications.extend(_suspend(scan, reason=QUOTA_REASON, facts=facts))
        return notifications

    usage.over_quota_since = None
    if site.desired_status == DesiredStatus.SUSPENDED and site.suspend_reason == QUOTA_REASON:
        notifications.extend(_unsuspend_after_quota(scan, facts=facts))
    return notifications


def _suspend(scan: SiteScan, *, reason: str, facts: dict[str, object]) -> list[Notification]:
    site = scan.site
    if site.status != SiteStatus.RUNNING or site.desired_status != DesiredStatus.RUNNING:
        return []
    try:
        operation = services.suspend_site(site=site, reason=reason, requested_by=SCANNER)
    except ServiceError as exc:
        log.warning("suspension not requested", site=str(site.uuid), error=exc.message)
        return []
    site.desired_status = DesiredStatus.SUSPENDED
    site.suspend_reason = reason
    message = f"Site {site.hostname} is being suspended ({reason})."
    return [
        _event(
            scan,
            kind="suspended",
            level=SiteEvent.Level.ERROR,
            message=message,
            reason=reason,
            operation=str(operation.uuid),
            **facts,
        )
    ]


def _unsuspend_after_quota(scan: SiteScan, *, facts: dict[str, object]) -> list[Notification]:
    site = scan.site
    if site.status != SiteStatus.SUSPENDED:
        # The suspend operation has not finished; unsuspend once it has.
        return []
    try:
        operation = services.unsuspend_site(site=site, requested_by=SCANNER)
    except ServiceError as exc:
        log.warning("unsuspension not requested", site=str(site.uuid), error=exc.message)
        return []
    site.desired_status = DesiredStatus.RUNNING
    site.suspend_reason = ""
    message = f"Disk use of {site.hostname} is under its quota again; the site is being resumed."
    return [
        _event(
            scan,
            kind="unsuspended",
            level=SiteEvent.Level.INFO,
            message=message,
            reason=QUOTA_REASON,
            operation=str(operation.uuid),
            **facts,
        )
    ]


def _oom_policy(scan: SiteScan) -> list[Notification]:
    if not scan.oom_kills:
        return []
    site, usage = scan.site, scan.usage
    usage.oom_kills += scan.oom_kills
    usage.last_oom_at = scan.now
    message = (
        f"The engine killed a process of {site.hostname} {scan.oom_kills} time(s) for "
        f"exceeding the plan's {site.plan.memory_mb} MiB memory limit."
    )
    return [
        _event(
            scan,
            kind="oom_killed",
            level=SiteEvent.Level.WARNING,
            message=message,
            kills=scan.oom_kills,
            total=usage.oom_kills,
            limit_mb=site.plan.memory_mb,
        )
    ]


def _restart_policy(scan: SiteScan) -> list[Notification]:
    site, usage, container = scan.site, scan.usage, scan.container
    threshold = settings.HOSTYARD_RESTART_LOOP_COUNT
    if container is None:
        return []
    # Only a site meant to be running can loop: a suspended site's container is
    # stopped, and a create operation handles crashes during its health check.
    if site.status != SiteStatus.RUNNING or site.desired_status != DesiredStatus.RUNNING:
        return []
    if container.state == "running" and usage.restart_count < threshold:
        usage.restart_loop_at = None
        return []
    if usage.restart_count < threshold or usage.restart_loop_at is not None:
        return []

    usage.restart_loop_at = scan.now
    message = (
        f"The container of {site.hostname} restarted {usage.restart_count} times "
        f"(limit {threshold}); it is stopped until support staff unsuspend the site."
    )
    notifications = [
        _event(
            scan,
            kind="restart_loop",
            level=SiteEvent.Level.ERROR,
            message=message,
            restart_count=usage.restart_count,
            oom_killed=container.oom_killed,
        )
    ]
    notifications.extend(
        _suspend(scan, reason=RESTART_LOOP_REASON, facts={"restart_count": usage.restart_count})
    )
    return notifications


def prune_samples(*, keep: int) -> int:
    """Delete all but the latest ``keep`` samples of each site and of scans.

    Returns the number of samples deleted.
    """
    with transaction.atomic():
        stale_scans = UsageScan.objects.values_list("pk", flat=True)[keep:]
        UsageScan.objects.filter(pk__in=list(stale_scans)).delete()
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                DELETE FROM {UsageSample._meta.db_table} WHERE id IN (
                    SELECT id FROM (
                        SELECT id, row_number() OVER (
                            PARTITION BY site_id ORDER BY measured_at DESC, id DESC
                        ) AS position
                        FROM {UsageSample._meta.db_table}
                    ) ranked WHERE ranked.position > %s
                )
                """,  # noqa: S608 - the table name comes from the model, the limit is a parameter
                [keep],
            )
            return cursor.rowcount
