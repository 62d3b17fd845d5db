"""Admin for custom domains, certificates and the ACME account.

Private keys are never shown: the certificate admin excludes the encrypted key
field, and the ACME account admin shows only the account URL.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from hosting import domains
from hosting.models import AcmeAccount, Certificate, Domain, DomainStatus


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "unicode_name",
        "site",
        "status",
        "status_reason",
        "checked_at",
        "next_check_at",
        "certificate_expiry",
    ]
    list_filter = ["status"]
    search_fields = ["name", "site__hostname", "site__customer__email"]
    list_select_related = ["site", "certificate"]
    readonly_fields = [
        "site",
        "name",
        "unicode_name",
        "status",
        "status_reason",
        "found",
        "check_attempts",
        "checked_at",
        "next_check_at",
        "check_deadline",
        "verified_at",
        "activated_at",
        "certificate",
        "created_at",
        "updated_at",
    ]
    actions = ["check_now", "remove"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Domains are added through the API, which normalizes and checks them.
        return False

    @admin.display(description="Certificate expires")
    def certificate_expiry(self, domain: Domain) -> object:
        return domain.certificate.not_after if domain.certificate else None

    @admin.action(description="Check selected domains now")
    def check_now(self, request: HttpRequest, queryset: QuerySet[Domain]) -> None:
        now = timezone.now()
        due = queryset.filter(status__in=[*DomainStatus.checking(), DomainStatus.VERIFIED])
        pks = list(due.values_list("pk", flat=True))
        due.update(next_check_at=now)
        for pk in pks:
            domains.send_task("check_domain", pk)
        self.message_user(request, f"Sent {len(pks)} domain check(s).")

    @admin.action(description="Remove selected domains")
    def remove(self, request: HttpRequest, queryset: QuerySet[Domain]) -> None:
        for domain in queryset.select_related("site"):
            domains.remove_domain(site=domain.site, raw_name=domain.name)
        self.message_user(request, f"Removal requested for {queryset.count()} domain(s).")


class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("alert", f"Expires within {settings.HOSTYARD_CERT_ALERT_DAYS} days"),
            ("renew", f"Expires within {settings.HOSTYARD_CERT_RENEW_DAYS} days"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        days = {
            "alert": settings.HOSTYARD_CERT_ALERT_DAYS,
            "renew": settings.HOSTYARD_CERT_RENEW_DAYS,
        }.get(self.value() or "")
        if days is None:
            return queryset
        return queryset.filter(not_after__lte=timezone.now() + timedelta(days=days))


@admin.register(Certificate)
class CertificateAdmin(admin.ModelAdmin):
    list_display = [
        "key",
        "kind",
        "status",
        "not_after",
        "days_left",
        "last_error",
        "next_attempt_at",
        "rate_limited_until",
        "alerted_at",
    ]
    list_filter = ["status", "kind", ExpiryFilter]
    search_fields = ["key", "site__hostname"]
    exclude = ["private_key_encrypted"]
    readonly_fields = [
        "uuid",
        "key",
        "kind",
        "names",
        "challenge",
        "site",
        "status",
        "not_before",
        "not_after",
        "fullchain_pem",
        "issued_at",
        "orders",
        "failed_attempts",
        "next_attempt_at",
        "rate_limited_until",
        "last_error",
        "last_error_code",
        "ordering_owner",
        "ordering_until",
        "alerted_at",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Days left")
    def days_left(self, certificate: Certificate) -> str:
        if certificate.not_after is None:
            return "-"
        return f"{(certificate.not_after - timezone.now()).total_seconds() / 86400:.1f}"


@admin.register(AcmeAccount)
class AcmeAccountAdmin(admin.ModelAdmin):
    list_display = ["uri", "directory_url", "created_at"]
    fields = ["uri", "directory_url", "created_at"]
    readonly_fields = ["uri", "directory_url", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
