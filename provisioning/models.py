"""Operations: durable state machines that converge a site towards its desired state."""

import uuid
from datetime import timedelta

from django.db import models
from django.utils import timezone

from hosting.models import Site


class OperationKind(models.TextChoices):
    CREATE = "create", "Create"
    TERMINATE = "terminate", "Terminate"
    SUSPEND = "suspend", "Suspend"
    UNSUSPEND = "unsuspend", "Unsuspend"
    RESTART = "restart", "Restart"
    CHANGE_PLAN = "change_plan", "Change plan"
    UPDATE = "update", "Update app version"
    BACKUP = "backup", "Back up"
    RESTORE = "restore", "Restore a backup"
    UNDO_TERMINATE = "undo_terminate", "Undo termination"
    PURGE = "purge", "Purge data"
    # Opened by the reconciler when a running site's container is missing.
    REPAIR = "repair", "Repair"


class OperationStatus(models.TextChoices):
    """Status of an operation.

    ::

        queued ──► running ──► succeeded
          ▲  │        │  ├───► failed     (a step ran and failed for good)
          │  │        │  └───► error      (the operation could not run at all)
          │  └──► cancelled
          └───────────┘  (retry later, or taken over after its worker died)
    """

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ERROR = "error", "Error"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def active(cls) -> list[str]:
        return [cls.QUEUED, cls.RUNNING]

    @classmethod
    def final(cls) -> list[str]:
        return [cls.SUCCEEDED, cls.FAILED, cls.ERROR, cls.CANCELLED]


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"

    @classmethod
    def done(cls) -> list[str]:
        return [cls.SUCCEEDED, cls.SKIPPED]


class StaleOperation(Exception):
    """A worker tried to change an operation it no longer holds the lease on."""


class Operation(models.Model):
    """One requested change to one site, carried out by ordered, idempotent steps.

    At most one worker holds an operation at a time: ``claim`` takes a lease with a
    conditional UPDATE, and a worker that dies stops renewing it, so another worker
    takes over after ``lease_expires_at``. Operations of one site run one at a time,
    in the order they were requested.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="operations")
    kind = models.CharField(max_length=32, choices=OperationKind.choices)
    status = models.CharField(
        max_length=16, choices=OperationStatus.choices, default=OperationStatus.QUEUED
    )
    params = models.JSONField(default=dict, blank=True)
    requested_by = models.CharField(max_length=200, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Earliest time the next attempt may run (set while waiting for a retry).
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    error_code = models.CharField(max_length=60, blank=True)
    error_message = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["site", "status"]),
            models.Index(fields=["status", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.site_id} ({self.status})"

    def claim(self, *, owner: str, lease_seconds: int) -> bool:
        """Take the lease if the operation is queued or its holder's lease ran out.

        Returns False, changing nothing, when another worker has the lease or the
        operation is final.
        """
        now = timezone.now()
        claimable = models.Q(status=OperationStatus.QUEUED) | models.Q(
            status=OperationStatus.RUNNING, lease_expires_at__lt=now
        )
        fields = {
            "status": OperationStatus.RUNNING,
            "lease_owner": owner,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "next_attempt_at": None,
        }
        updated = Operation.objects.filter(claimable, pk=self.pk).update(**fields)
        if not updated:
            return False

        Operation.objects.filter(pk=self.pk, started_at__isnull=True).update(started_at=now)
        self.refresh_from_db()
        return True

    def renew_lease(self, *, lease_seconds: int) -> None:
        """Extend the lease; raise StaleOperation if another worker took it over."""
        expires = timezone.now() + timedelta(seconds=lease_seconds)
        updated = Operation.objects.filter(
            pk=self.pk, status=OperationStatus.RUNNING, lease_owner=self.lease_owner
        ).update(lease_expires_at=expires)
        if not updated:
            raise StaleOperation(f"operation {self.uuid} is no longer held by {self.lease_owner}")
        self.lease_expires_at = expires

    def release(
        self, *, status: str, retry_at=None, error_code: str = "", error_message: str = ""
    ) -> None:
        """Give up the lease, moving to ``status``; raise StaleOperation if not held."""
        now = timezone.now()
        fields: dict[str, object] = {
            "status": status,
            "lease_owner": "",
            "lease_expires_at": None,
            "next_attempt_at": retry_at,
            "error_code": error_code,
            "error_message": error_message[:1000],
        }
        if status in OperationStatus.final():
            fields["finished_at"] = now
        updated = Operation.objects.filter(
            pk=self.pk, status=OperationStatus.RUNNING, lease_owner=self.lease_owner
        ).update(**fields)
        if not updated:
            raise StaleOperation(f"operation {self.uuid} is no longer held by {self.lease_owner}")
        for name, value in fields.items():
            setattr(self, name, value)


class OperationStep(models.Model):
    """Progress of one step: attempts, timings, a user-facing message and the technical detail."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=60)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    # Shown to API clients and support staff.
    message = models.CharField(max_length=1000, blank=True)
    error_code = models.CharField(max_length=60, blank=True)
    # Engine responses and tracebacks, for support staff only.
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["operation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["operation", "position"], name="step_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.name} ({self.status})"


class StrayContainer(models.Model):
    """A container carrying this deployment's labels that no live site owns.

    The reconciler records one row per container when it first lists it, and removes
    the container once it has been stray for ``HOSTYARD_STRAY_GRACE_SECONDS``. The
    row stays as the record of what was found and removed.
    """

    container_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=255)
    site_uuid = models.CharField(max_length=64, blank=True)
    role = models.CharField(max_length=32, blank=True)
    state = models.CharField(max_length=32, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    # Set when the container disappeared, or became a live site's, before removal.
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-first_seen_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.container_id[:12]})"


# Registers the usage models with this app.
from provisioning.usage_models import SiteUsage, UsageSample, UsageScan  # noqa: E402, F401
