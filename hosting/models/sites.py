"""Sites: the desired and observed state of what a customer runs."""

import uuid

from django.db import models
from django.utils import timezone

from hosting.models.catalog import App, Plan
from hosting.models.customers import Customer
from hosting.models.organizations import Organization


class DesiredStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUSPENDED = "suspended", "Suspended"
    TERMINATED = "terminated", "Terminated"


class SiteStatus(models.TextChoices):
    """Observed status, moved only by operations.

    ::

        pending ──► provisioning ──► running ◄──► suspended
                         │              │            │
                         ▼              ▼            ▼
                       failed ──────► terminating ──► terminated
                         ▲                               │
                         └──── provisioning ◄────────────┘  (undo, until purged)

    A terminated site keeps its volume until ``purge_after``; ``purged_at`` marks
    the purge that removed it.
    """

    PENDING = "pending", "Pending"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    SUSPENDED = "suspended", "Suspended"
    FAILED = "failed", "Failed"
    TERMINATING = "terminating", "Terminating"
    TERMINATED = "terminated", "Terminated"

    @classmethod
    def live(cls) -> list[str]:
        """Statuses of sites that count against quotas and own infrastructure."""
        return [
            cls.PENDING,
            cls.PROVISIONING,
            cls.RUNNING,
            cls.SUSPENDED,
            cls.FAILED,
            cls.TERMINATING,
        ]

    @classmethod
    def final(cls) -> list[str]:
        return [cls.TERMINATED]


class InvalidTransition(Exception):
    """The site was not in a status the requested change may start from."""

    def __init__(self, site: "Site", target: str, expected: list[str]) -> None:
        super().__init__(
            f"site {site.uuid} cannot move to {target!r} from {site.status!r}; "
            f"expected one of {', '.join(expected)}"
        )
        self.site = site
        self.target = target


class Site(models.Model):
    """One hosted app instance.

    The public identifier is ``uuid``; containers, volumes and records carry it in the
    ``hostyard.site`` label, which is how every provisioning step finds them again.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="sites")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="sites")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="sites")
    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="sites")
    app_version = models.CharField(max_length=64)
    label = models.CharField(max_length=63)
    hostname = models.CharField(max_length=253)

    desired_status = models.CharField(
        max_length=16, choices=DesiredStatus.choices, default=DesiredStatus.RUNNING
    )
    status = models.CharField(max_length=16, choices=SiteStatus.choices, default=SiteStatus.PENDING)
    status_reason = models.CharField(max_length=500, blank=True)
    suspend_reason = models.CharField(max_length=32, blank=True)

    container_id = models.CharField(max_length=64, blank=True)
    volume_name = models.CharField(max_length=255, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    terminated_at = models.DateTimeField(null=True, blank=True)
    # A terminated site keeps its data volume and backups until this time, so the
    # termination can be undone. A purge then removes them and sets ``purged_at``.
    purge_after = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A hostname stays reserved until its site's data is purged, because a
            # terminated site can be brought back from its volume until then.
            models.UniqueConstraint(
                fields=["hostname"],
                condition=models.Q(purged_at__isnull=True),
                name="site_unique_live_hostname",
            ),
        ]
        indexes = [
            # Serves the API's site list: one organization's sites, newest first.
            models.Index(fields=["organization", "-created_at", "-id"], name="site_org_newest_idx"),
            models.Index(fields=["organization", "status"]),
            models.Index(fields=["status"]),
        ]

    def __str__(self) -> str:
        return self.hostname

    @property
    def image_reference(self) -> str:
        return self.app.image_reference(self.app_version)

    def transition(self, *, target: str, expected: list[str], reason: str = "") -> None:
        """Move to ``target`` if the row is still in one of ``expected``, else raise.

        The check and the write are one conditional UPDATE, so two workers can never
        both make the same move.
        """
        # The reason describes the latest move, so a successful one clears an old reason.
        fields: dict[str, object] = {
            "status": target,
            "status_reason": reason,
            "updated_at": timezone.now(),
        }
        if target == SiteStatus.TERMINATED:
            fields["terminated_at"] = timezone.now()

        updated = Site.objects.filter(pk=self.pk, status__in=expected).update(**fields)
        if not updated:
            self.refresh_from_db(fields=["status"])
            if self.status == target:
                return
            raise InvalidTransition(self, target, expected)

        for name, value in fields.items():
            setattr(self, name, value)


class SiteEvent(models.Model):
    """Something support staff should see on a site: a repair, a warning, a state change."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=60)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    message = models.CharField(max_length=1000)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"
