"""Organizations (partner schools, resellers, the house) and their API keys."""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

API_KEY_PREFIX_LENGTH = 8
API_KEY_SECRET_BYTES = 24


class Organization(models.Model):
    """A tenant: every customer, site and API key belongs to exactly one organization.

    The optional caps bound the organization's totals on top of each plan's limits.
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    max_sites = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no cap.")
    max_memory_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="Cap on the sum of the plans' memory, in MiB."
    )
    max_disk_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="Cap on the sum of the plans' disk, in MiB."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKeyScope(models.TextChoices):
    SITES_READ = "sites:read", "Read sites and operations"
    SITES_WRITE = "sites:write", "Create, change and terminate sites"


def _digest(raw_key: str) -> str:
    # A keyed digest: a leaked table of digests is useless without SECRET_KEY.
    return hmac.new(settings.SECRET_KEY.encode(), raw_key.encode(), hashlib.sha256).hexdigest()


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def usable(self) -> "ApiKeyQuerySet":
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)


class ApiKey(models.Model):
    """A credential of one organization.

    The full key (``hy_<prefix>_<secret>``) is shown once, at creation; only its
    visible prefix and an HMAC-SHA256 digest are stored.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, help_text="Who uses the key, e.g. 'storefront'.")
    prefix = models.CharField(max_length=API_KEY_PREFIX_LENGTH, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, help_text="Any of: sites:read, sites:write.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (hy_{self.prefix}_…)"

    @classmethod
    def issue(
        cls,
        *,
        organization: Organization,
        name: str,
        scopes: list[str] | None = None,
        expires_at=None,
    ) -> tuple["ApiKey", str]:
        """Create a key and return it with the raw secret, which is not stored anywhere."""
        prefix = secrets.token_hex(API_KEY_PREFIX_LENGTH // 2)
        raw_key = f"hy_{prefix}_{secrets.token_urlsafe(API_KEY_SECRET_BYTES)}"
        key = cls.objects.create(
            organization=organization,
            name=name,
            prefix=prefix,
            digest=_digest(raw_key),
            scopes=scopes if scopes is not None else [s.value for s in ApiKeyScope],
            expires_at=expires_at,
        )
        return key, raw_key

    @classmethod
    def find(cls, raw_key: str) -> "ApiKey | None":
        """Return the usable key matching ``raw_key``, or None (unknown, revoked, expired)."""
        parts = raw_key.split("_")
        if len(parts) < 3 or parts[0] != "hy" or len(parts[1]) != API_KEY_PREFIX_LENGTH:
            return None
        key = cls.objects.usable().select_related("organization").filter(prefix=parts[1]).first()
        if key is None or not hmac.compare_digest(key.digest, _digest(raw_key)):
            return None
        return key

    @property
    def is_usable(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
