"""Admin for measured usage: every site's latest figures against its plan, and the scans."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from provisioning.usage_models import MIB, SiteUsage, UsageSample, UsageScan


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the usage scan."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SiteUsage)
class SiteUsageAdmin(ReadOnlyAdmin):
    list_display = [
        "site",
        "plan",
        "disk_used_mb",
        "disk_limit_mb",
        "disk_percent",
        "memory_used_mb",
        "memory_limit_mb",
        "container_state",
        "oom_kills",
        "restart_count",
        "over_quota_since",
        "measured_at",
    ]
    list_filter = ["container_state", "site__plan", "site__organization", "site__status"]
    search_fields = ["site__hostname", "site__uuid", "site__customer__email"]
    list_select_related = ["site__plan"]
    ordering = ["-volume_bytes"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SiteUsage]:
        return super().get_queryset(request).select_related("site__plan")

    @admin.display(description="plan")
    def plan(self, usage: SiteUsage) -> str:
        return usage.site.plan.slug

    @admin.display(description="disk MiB", ordering="volume_bytes")
    def disk_used_mb(self, usage: SiteUsage) -> float:
        return round(usage.disk_bytes / MIB, 1)

    @admin.display(description="disk limit MiB")
    def disk_limit_mb(self, usage: SiteUsage) -> int:
        return usage.site.plan.disk_mb

    @admin.display(description="disk %")
    def disk_percent(self, usage: SiteUsage) -> float:
        return round(usage.disk_bytes * 100 / (usage.site.plan.disk_mb * MIB), 1)

    @admin.display(description="memory MiB", ordering="memory_bytes")
    def memory_used_mb(self, usage: SiteUsage) -> float | None:
        return None if usage.memory_bytes is None else round(usage.memory_bytes / MIB, 1)

    @admin.display(description="memory limit MiB")
    def memory_limit_mb(self, usage: SiteUsage) -> int:
        return usage.site.plan.memory_mb


@admin.register(UsageSample)
class UsageSampleAdmin(ReadOnlyAdmin):
    list_display = [
        "site",
        "measured_at",
        "volume_bytes",
        "backup_bytes",
        "memory_bytes",
        "container_state",
        "restart_count",
        "oom_kills",
    ]
    list_filter = ["container_state"]
    search_fields = ["site__hostname", "site__uuid"]
    list_select_related = ["site"]
    date_hierarchy = "measured_at"


@admin.register(UsageScan)
class UsageScanAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "finished_at", "sites", "duration_ms", "engine_calls"]
