"""Support staff's view: find a site by hostname or customer, see its operations, act."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from hosting import (
    domain_admin,  # noqa: F401 - registers the domain and certificate admins
    lifecycle,
    services,
)
from hosting.errors import ServiceError
from hosting.models import ApiKey, App, Backup, Customer, Organization, Plan, Site, SiteEvent


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "max_sites", "max_memory_mb", "max_disk_mb", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "organization",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    list_filter = ["organization", "revoked_at"]
    search_fields = ["name", "prefix", "organization__name"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are issued with `manage.py create_api_key`, which shows the secret once.
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            key.revoke()
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "organization", "external_id", "created_at"]
    list_filter = ["organization"]
    search_fields = ["email", "name", "external_id"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "memory_mb",
        "cpus",
        "pids_limit",
        "disk_mb",
        "max_sites_per_customer",
        "is_active",
    ]
    list_filter = ["is_active"]


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "image",
        "default_version",
        "internal_port",
        "health_path",
        "min_memory_mb",
        "is_active",
    ]
    list_filter = ["is_active"]
    search_fields = ["slug", "name", "image"]


EVENT_FIELDS = ("created_at", "level", "kind", "message")


class SiteEventInline(admin.TabularInline):
    model = SiteEvent
    extra = 0
    can_delete = False
    fields = EVENT_FIELDS
    readonly_fields = EVENT_FIELDS
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


BACKUP_FIELDS = ("created_at", "kind", "app_version", "size_bytes", "uuid", "deleted_at")


class BackupInline(admin.TabularInline):
    model = Backup
    extra = 0
    can_delete = False
    fields = BACKUP_FIELDS
    readonly_fields = BACKUP_FIELDS
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = [
        "hostname",
        "status",
        "desired_status",
        "app",
        "app_version",
        "plan",
        "customer",
        "organization",
        "created_at",
    ]
    list_filter = ["status", "desired_status", "app", "plan", "organization"]
    search_fields = ["hostname", "uuid", "customer__email", "customer__name", "label"]
    list_select_related = ["app", "plan", "customer", "organization"]
    # Every change to a site goes through an operation (an action here or the API), so
    # the form only displays. Editing plan, owner or hostname in place would change the
    # record without touching the container, DNS or the edge.
    readonly_fields = [
        "uuid",
        "organization",
        "customer",
        "plan",
        "app",
        "app_version",
        "label",
        "hostname",
        "desired_status",
        "status",
        "status_reason",
        "suspend_reason",
        "container_id",
        "volume_name",
        "created_at",
        "updated_at",
        "terminated_at",
        "suspend_reason",
        "purge_after",
        "purged_at",
        "operations_link",
    ]
    inlines = [SiteEventInline, BackupInline]
    actions = [
        "suspend",
        "unsuspend",
        "restart",
        "back_up",
        "terminate",
        "undo_terminate",
        "purge",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Sites are created by signups (API), which check quotas and open the create.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Deleting the row would orphan the container and volume: terminate instead.
        return False

    @admin.display(description="Operations")
    def operations_link(self, site: Site) -> str:
        url = reverse("admin:provisioning_operation_changelist") + f"?site__id__exact={site.pk}"
        return format_html('<a href="{}">{} operation(s)</a>', url, site.operations.count())

    def _apply(self, request: HttpRequest, queryset: QuerySet[Site], service, **kwargs) -> None:
        """Call ``service`` for each site; report each rejection, then the count opened."""
        opened = 0
        for site in queryset:
            try:
                service(site=site, requested_by=f"staff:{request.user}", **kwargs)
            except ServiceError as exc:
                self.message_user(request, f"{site.hostname}: {exc.message}", messages.WARNING)
            else:
                opened += 1
        self.message_user(request, f"Opened {opened} operation(s).")

    @admin.action(description="Terminate selected sites")
    def terminate(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        self._apply(request, queryset, services.terminate_site)

    @admin.action(description="Suspend selected sites (staff)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        self._apply(request, queryset, lifecycle.suspend_site, reason=lifecycle.SuspendReason.STAFF)

    @admin.action(description="Unsuspend selected sites")
    def unsuspend(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        self._apply(request, queryset, lifecycle.unsuspend_site)

    @admin.action(description="Restart selected sites")
    def restart(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        self._apply(request, queryset, lifecycle.restart_site)

    @admin.action(description="Back up selected sites now")
    def back_up(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        self._apply(request, queryset, lifecycle.back_up_site)

    @admin.action(description="Undo termination of selected sites")
    def undo_terminate(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        self._apply(request, queryset, lifecycle.undo_terminate)

    @admin.action(description="Purge data of selected terminated sites")
    def purge(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        self._apply(request, queryset, lifecycle.purge_site)
