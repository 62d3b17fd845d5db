"""TLS certificates from the ACME CA and the ACME account that orders them.

Private keys are stored encrypted with ``provisioning.crypto``; neither model
prints, logs or serializes a key.
"""

import uuid
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from hosting.models.sites import Site


class CertificateStatus(models.TextChoices):
    """Status of a certificate row.

    ::

        pending ──► issued ──► issued (renewed in place; a failed renewal keeps the old PEMs)
           │          ▲
           ▼          │
         failed ──────┘  (no certificate stored yet and the last validation failed)
    """

    PENDING = "pending", "Pending"
    ISSUED = "issued", "Issued"
    FAILED = "failed", "Failed"


class CertificateKind(models.TextChoices):
    WILDCARD = "wildcard", "Platform wildcard (DNS-01)"
    HOSTNAME = "hostname", "Platform hostname (HTTP-01)"
    DOMAIN = "domain", "Custom domain (HTTP-01)"


class Certificate(models.Model):
    """One certificate for a fixed set of names, renewed in place.

    ``key`` identifies the name set (``wildcard:<zone>``, ``hostname:<name>``,
    ``domain:<name>``), so each set has one row and one edge entry (``edge_id``).
    Renewal replaces the PEMs of the same row and the same edge entry. The order
    budget lives here too: failures per name set are spaced out with
    ``next_attempt_at``, and a CA rate limit is honoured until ``rate_limited_until``.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    key = models.CharField(max_length=300, unique=True)
    kind = models.CharField(max_length=16, choices=CertificateKind.choices)
    names = models.JSONField(default=list)
    challenge = models.CharField(max_length=16)  # "http-01" or "dns-01"
    # The site a hostname or domain certificate belongs to; empty for the shared wildcard.
    site = models.ForeignKey(
        Site, on_delete=models.CASCADE, null=True, blank=True, related_name="certificates"
    )
    status = models.CharField(
        max_length=16, choices=CertificateStatus.choices, default=CertificateStatus.PENDING
    )

    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True, db_index=True)
    fullchain_pem = models.TextField(blank=True)
    private_key_encrypted = models.TextField(blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    orders = models.PositiveIntegerField(default=0)

    failed_attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    rate_limited_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    last_error_code = models.CharField(max_length=60, blank=True)

    # Lease of the worker placing an order, so one order runs per name set.
    ordering_owner = models.CharField(max_length=200, blank=True)
    ordering_until = models.DateTimeField(null=True, blank=True)
    # Last time the expiry alert fired for this certificate.
    alerted_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["not_after", "key"]

    def __str__(self) -> str:
        return self.key

    def __repr__(self) -> str:
        return f"<Certificate {self.key} {self.status} not_after={self.not_after}>"

    @property
    def edge_id(self) -> str:
        """The id of this certificate in the edge proxy."""
        return str(self.uuid)

    def valid_for(self, days: int, *, now: datetime | None = None) -> bool:
        """Return True if a certificate is stored and stays valid ``days`` days from ``now``."""
        now = now or timezone.now()
        if self.status != CertificateStatus.ISSUED or self.not_after is None:
            return False
        return self.not_after > now + timedelta(days=days)

    def claim_ordering(self, *, owner: str, lease_seconds: int) -> bool:
        """Take the order lease unless another worker holds a live one. One conditional UPDATE."""
        now = timezone.now()
        free = models.Q(ordering_until__isnull=True) | models.Q(ordering_until__lt=now)
        updated = Certificate.objects.filter(free, pk=self.pk).update(
            ordering_owner=owner, ordering_until=now + timedelta(seconds=lease_seconds)
        )
        return bool(updated)

    def release_ordering(self, *, owner: str) -> None:
        Certificate.objects.filter(pk=self.pk, ordering_owner=owner).update(
            ordering_owner="", ordering_until=None
        )


class AcmeAccount(models.Model):
    """The ACME account used at one directory, with its key encrypted at rest."""

    directory_url = models.URLField(max_length=500, unique=True)
    uri = models.URLField(max_length=500)
    key_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"<AcmeAccount {self.uri}>"
