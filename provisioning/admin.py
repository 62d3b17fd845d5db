from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from provisioning.models import Operation, OperationStatus, OperationStep, StrayContainer
from provisioning.services import enqueue

STEP_FIELDS = (
    "position",
    "name",
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "duration_ms",
    "message",
    "error_code",
    "detail",
)


class OperationStepInline(admin.TabularInline):
    model = OperationStep
    extra = 0
    can_delete = False
    fields = STEP_FIELDS
    readonly_fields = STEP_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = [
        "uuid",
        "kind",
        "status",
        "site",
        "requested_by",
        "created_at",
        "finished_at",
        "error_code",
    ]
    list_filter = ["status", "kind", "site__organization"]
    search_fields = ["uuid", "site__uuid", "site__hostname", "site__customer__email"]
    list_select_related = ["site"]
    readonly_fields = [
        "uuid",
        "site",
        "kind",
        "status",
        "params",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "next_attempt_at",
        "lease_owner",
        "lease_expires_at",
        "error_code",
        "error_message",
    ]
    inlines = [OperationStepInline]
    actions = ["retry"]

    # Operations are the audit trail: created by services, never edited or deleted here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Retry selected failed operations")
    def retry(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        retried = 0
        for operation in queryset.filter(
            status__in=[OperationStatus.FAILED, OperationStatus.ERROR]
        ):
            operation.steps.filter(status="failed").update(status="pending")
            Operation.objects.filter(pk=operation.pk).update(
                status=OperationStatus.QUEUED,
                finished_at=None,
                error_code="",
                error_message="",
                next_attempt_at=timezone.now(),
            )
            enqueue(operation.pk)
            retried += 1
        self.message_user(request, f"Queued {retried} operation(s) again.")


STRAY_FIELDS = (
    "name",
    "container_id",
    "site_uuid",
    "role",
    "state",
    "first_seen_at",
    "removed_at",
    "resolved_at",
)


@admin.register(StrayContainer)
class StrayContainerAdmin(admin.ModelAdmin):
    """Containers the reconciler found without a live site, and when it removed them."""

    list_display = STRAY_FIELDS
    list_filter = ["role", "removed_at", "resolved_at"]
    search_fields = ["name", "container_id", "site_uuid"]
    readonly_fields = [*STRAY_FIELDS, "last_seen_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# Registers the usage admin pages.
from provisioning import usage_admin  # noqa: E402, F401
