"""Backup steps: archive the data volume, restore an archive, remove archives."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from hosting.models import Backup, BackupKind, Site
from provisioning.drivers import registry
from provisioning.drivers.runtime import docker_lifecycle
from provisioning.engine.steps import SkipStep, StepContext, step
from provisioning.errors import PermanentError
from provisioning.models import OperationKind


def archive_path(site: Site, operation_uuid: str) -> Path:
    return Path(settings.HOSTYARD_BACKUP_DIR) / str(site.uuid) / f"{operation_uuid}.tar"


@step("snapshot_volume")
def snapshot_volume(ctx: StepContext) -> dict[str, Any]:
    """Archive the volume and record a Backup, once per operation."""
    operation_uuid = str(ctx.operation.uuid)
    existing = Backup.objects.filter(operation_uuid=operation_uuid).first()
    if existing is not None:
        return {"backup": str(existing.uuid), "size_bytes": existing.size_bytes}

    destination = archive_path(ctx.site, operation_uuid)
    size = docker_lifecycle.archive_volume(
        registry.runtime(),
        site_uuid=ctx.site_uuid,
        destination=destination,
        image=settings.HOSTYARD_HELPER_IMAGE,
    )
    kind = (
        BackupKind.PRE_UPDATE if ctx.operation.kind == OperationKind.UPDATE else BackupKind.MANUAL
    )
    backup, _ = Backup.objects.get_or_create(
        operation_uuid=operation_uuid,
        defaults={
            "site": ctx.site,
            "kind": kind,
            "path": str(destination),
            "size_bytes": size,
            "app_version": ctx.site.app_version,
        },
    )
    return {"backup": str(backup.uuid), "size_bytes": size}


def restorable_archive(backup: Backup) -> Path:
    """Return the backup's archive path; raise PermanentError if it cannot be restored."""
    path = Path(backup.path)
    if backup.deleted_at is not None or not path.exists():
        raise PermanentError(
            f"Backup {backup.uuid} has no archive at {path}; choose another backup.",
            code="backup_missing",
        )
    return path


@step("restore_volume")
def restore_volume(ctx: StepContext) -> dict[str, Any]:
    """Replace the volume's contents with the backup named in ``params['backup']``."""
    backup = Backup.objects.get(uuid=ctx.operation.params["backup"], site=ctx.site)
    docker_lifecycle.restore_volume(
        registry.runtime(),
        site_uuid=ctx.site_uuid,
        archive=restorable_archive(backup),
        image=settings.HOSTYARD_HELPER_IMAGE,
    )
    return {"backup": str(backup.uuid)}


def purging(ctx: StepContext) -> bool:
    return ctx.operation.kind == OperationKind.PURGE or bool(ctx.operation.params.get("purge"))


@step("purge_volume")
def purge_volume(ctx: StepContext) -> dict[str, Any]:
    if not purging(ctx):
        raise SkipStep("The volume is kept for the retention period.")
    return {"removed": registry.runtime().remove_volume(site_uuid=ctx.site_uuid)}


@step("purge_backups")
def purge_backups(ctx: StepContext) -> dict[str, Any]:
    """Delete the site's archives, then mark the site purged. Idempotent."""
    if not purging(ctx):
        raise SkipStep("Backups are kept for the retention period.")
    removed = 0
    for backup in Backup.objects.filter(site=ctx.site, deleted_at__isnull=True):
        Path(backup.path).unlink(missing_ok=True)
        backup.deleted_at = timezone.now()
        backup.save(update_fields=["deleted_at"])
        removed += 1
    site_dir = Path(settings.HOSTYARD_BACKUP_DIR) / ctx.site_uuid
    if site_dir.is_dir():
        for leftover in site_dir.glob("*.partial"):
            leftover.unlink(missing_ok=True)
        if not any(site_dir.iterdir()):
            site_dir.rmdir()
    Site.objects.filter(pk=ctx.site.pk).update(purged_at=timezone.now(), purge_after=None)
    return {"backups_removed": removed}
