"""Backups: tar archives of a site's data volume, kept in ``HOSTYARD_BACKUP_DIR``."""

import uuid

from django.db import models

from hosting.models.sites import Site


class BackupKind(models.TextChoices):
    MANUAL = "manual", "Manual"
    PRE_UPDATE = "pre_update", "Before an update"


class Backup(models.Model):
    """One finished archive of a site's data volume.

    A row exists only once its archive is complete on disk: the step that writes it
    renames a finished temporary file into place before recording the row, so a
    listed backup can always be restored. ``operation_uuid`` makes the step
    idempotent (one backup per operation).
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="backups")
    kind = models.CharField(max_length=16, choices=BackupKind.choices, default=BackupKind.MANUAL)
    operation_uuid = models.UUIDField(unique=True)
    # Absolute path of the archive on the workers' backup storage.
    path = models.CharField(max_length=1000)
    size_bytes = models.BigIntegerField()
    app_version = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Set when a purge deleted the archive; the row stays as a record.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.site} {self.kind} {self.created_at:%Y-%m-%d %H:%M}"
