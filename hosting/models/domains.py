"""Customers' own domain names attached to a site."""

from django.db import models
from django.utils import timezone

from hosting.domain_names import to_unicode
from hosting.models.sites import Site


class DomainStatus(models.TextChoices):
    """Status of a custom domain.

    ::

        pending ◄──► conflict     (a CNAME to another site's hostname; re-checked too)
          │  ▲          │
          │  │          ▼
          │  └─────── verified ──► active
          │  (a pre-order check     (certificate issued, route live)
          │   found it moved away)
          ▼
        failed                    (not pointed at the platform within the check window)

        any status ──► removing ──► row deleted once the edge no longer serves the name
    """

    PENDING = "pending", "Pending"
    VERIFIED = "verified", "Verified"
    ACTIVE = "active", "Active"
    CONFLICT = "conflict", "Conflict"
    FAILED = "failed", "Failed"
    REMOVING = "removing", "Removing"

    @classmethod
    def checking(cls) -> list[str]:
        """Statuses in which the worker re-checks the domain's DNS records."""
        return [cls.PENDING, cls.CONFLICT]

    @classmethod
    def routed(cls) -> list[str]:
        """Statuses in which the edge serves the domain."""
        return [cls.ACTIVE]


class InvalidDomainTransition(Exception):
    """The domain was not in a status the requested change may start from."""


class Domain(models.Model):
    """A domain a customer points at one site, checked, certified and routed by workers.

    ``name`` is normalized (lower case, A-labels, no trailing dot) and unique across
    all sites, so one name is served by at most one site.
    """

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="domains")
    name = models.CharField(max_length=253)
    status = models.CharField(
        max_length=16, choices=DomainStatus.choices, default=DomainStatus.PENDING
    )
    # The last check's outcome as a sentence for the customer.
    status_reason = models.CharField(max_length=1000, blank=True)
    # What the last check found in DNS: addresses, CNAME chain, CAA records.
    found = models.JSONField(default=dict, blank=True)
    check_attempts = models.PositiveIntegerField(default=0)
    checked_at = models.DateTimeField(null=True, blank=True)
    # The worker checks again at this time (pending, conflict) or retries activation (verified).
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # After this time a domain that still does not point at the platform fails.
    check_deadline = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    certificate = models.ForeignKey(
        "hosting.Certificate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="domains",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], name="domain_unique_name"),
        ]
        indexes = [models.Index(fields=["status", "next_check_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def unicode_name(self) -> str:
        """The name with A-labels decoded, for display (``bücher.example``)."""
        return to_unicode(self.name)

    def transition(
        self, *, target: str, expected: list[str], reason: str | None = None, **fields: object
    ) -> None:
        """Move to ``target`` if the row is still in one of ``expected``, else raise.

        One conditional UPDATE, so two workers never both make the same move.
        Raises ``InvalidDomainTransition`` when the row moved on meanwhile.
        """
        values: dict[str, object] = {"status": target, "updated_at": timezone.now(), **fields}
        if reason is not None:
            values["status_reason"] = reason[:1000]

        updated = Domain.objects.filter(pk=self.pk, status__in=expected).update(**values)
        if not updated:
            self.refresh_from_db(fields=["status"])
            raise InvalidDomainTransition(
                f"domain {self.name} cannot move to {target!r} from {self.status!r}; "
                f"expected one of {', '.join(expected)}"
            )
        for name, value in values.items():
            setattr(self, name, value)
