"""Measured resource use of sites: the latest figures, their history and the scans.

Imported by ``provisioning.models`` so Django registers these models with the
provisioning app.
"""

from django.db import models
from django.utils import timezone

from hosting.models import Site

MIB = 1024 * 1024


class SiteUsage(models.Model):
    """The latest measured use of one site, and what the quota policy remembers about it.

    One row per site, written only by the usage scan. ``disk_warning_percent`` is the
    highest warning threshold the site has crossed and not fallen back under, so each
    crossing is reported once. ``over_quota_since`` is set while disk use is above the
    plan's quota and drives the grace period before suspension.
    """

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="usage")
    measured_at = models.DateTimeField(null=True, blank=True)
    volume_bytes = models.BigIntegerField(default=0)
    backup_bytes = models.BigIntegerField(default=0)
    # None when the container was not running or no memory source was readable.
    memory_bytes = models.BigIntegerField(null=True, blank=True)
    container_state = models.CharField(max_length=32, blank=True)
    container_id = models.CharField(max_length=64, blank=True)
    # The container cgroup's oom_kill counter at the last scan, to count new kills.
    oom_counter = models.PositiveIntegerField(default=0)

    disk_warning_percent = models.PositiveSmallIntegerField(default=0)
    over_quota_since = models.DateTimeField(null=True, blank=True)

    oom_kills = models.PositiveIntegerField(default=0, help_text="OOM kills seen since signup.")
    last_oom_at = models.DateTimeField(null=True, blank=True)
    restart_count = models.PositiveIntegerField(
        default=0, help_text="The engine's RestartCount of the current container."
    )
    restart_loop_at = models.DateTimeField(
        null=True, blank=True, help_text="When the scan stopped a container that kept restarting."
    )

    class Meta:
        verbose_name_plural = "site usage"

    def __str__(self) -> str:
        return f"usage of {self.site_id}"

    @property
    def disk_bytes(self) -> int:
        return self.volume_bytes + self.backup_bytes


class UsageSample(models.Model):
    """One measurement of one site by one scan; the scan keeps the latest N per site."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="usage_samples")
    measured_at = models.DateTimeField(default=timezone.now)
    volume_bytes = models.BigIntegerField(default=0)
    backup_bytes = models.BigIntegerField(default=0)
    memory_bytes = models.BigIntegerField(null=True, blank=True)
    container_state = models.CharField(max_length=32, blank=True)
    restart_count = models.PositiveIntegerField(default=0)
    # OOM kills the engine reported for the site since the previous scan.
    oom_kills = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-measured_at", "-id"]
        indexes = [models.Index(fields=["site", "-measured_at"])]

    def __str__(self) -> str:
        return f"{self.site_id} at {self.measured_at:%Y-%m-%d %H:%M:%S}"

    @property
    def disk_bytes(self) -> int:
        return self.volume_bytes + self.backup_bytes


class UsageScan(models.Model):
    """One run of the usage scan: its cost, and the engine-event cursor for the next run."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    sites = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    engine_calls = models.PositiveIntegerField(default=0)
    # Engine events up to this time (nanoseconds since the epoch) have been counted.
    events_until_ns = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"usage scan at {self.started_at:%Y-%m-%d %H:%M:%S}"
