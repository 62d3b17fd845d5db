"""The catalog: plans (what a site may use) and apps (what a site runs)."""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models


class Plan(models.Model):
    """Resource limits and price of a site.

    Memory, CPU and process count become hard limits on the container; disk is
    measured and enforced by policy; ``max_sites_per_customer`` bounds signups.
    """

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100)
    memory_mb = models.PositiveIntegerField(validators=[MinValueValidator(16)])
    cpus = models.DecimalField(
        max_digits=5, decimal_places=2, validators=[MinValueValidator(Decimal("0.05"))]
    )
    pids_limit = models.PositiveIntegerField(validators=[MinValueValidator(8)])
    disk_mb = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    max_sites_per_customer = models.PositiveIntegerField(default=1)
    # The billing system's identifier for this plan (e.g. a Stripe price or plan id).
    price_ref = models.CharField(max_length=100, blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive plans take no new signups.")

    class Meta:
        ordering = ["memory_mb", "slug"]

    def __str__(self) -> str:
        return self.name


class App(models.Model):
    """A catalog entry: the image a site runs and how to run it.

    Only catalog images run. ``image`` may point at a local mirror or build; the
    tag comes from ``default_version`` unless the site pins another version.
    """

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100)
    image = models.CharField(max_length=255, help_text="Repository without tag, e.g. ghost.")
    default_version = models.CharField(max_length=64, help_text="Image tag for new sites.")
    internal_port = models.PositiveIntegerField()
    environment = models.JSONField(default=dict, blank=True, help_text="Environment defaults.")
    data_path = models.CharField(max_length=255, help_text="Mount point of the data volume.")
    health_path = models.CharField(max_length=255, default="/")
    min_memory_mb = models.PositiveIntegerField(default=64)
    # Linux capabilities added back after dropping all, e.g. ["CHOWN", "SETUID"].
    capabilities = models.JSONField(default=list, blank=True)
    # Seconds a new container may take before its health check must respond.
    start_timeout_seconds = models.PositiveIntegerField(default=120)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "app"

    def __str__(self) -> str:
        return self.name

    def image_reference(self, version: str | None = None) -> str:
        return f"{self.image}:{version or self.default_version}"
