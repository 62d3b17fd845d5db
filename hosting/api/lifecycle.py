"""Site lifecycle endpoints: suspend, unsuspend, restart, change plan, update, backups,
undo a termination. Each returns 202 with a link to the operation it opened.

A request made while another operation of the site is still active is queued
behind it: the answer's ``operation.queued_behind`` names that operation.
"""

from typing import TYPE_CHECKING

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from hosting import lifecycle
from hosting.models import Backup, Plan, Site


class SuspendSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=list(lifecycle.SuspendReason.ALL))


class ChangePlanSerializer(serializers.Serializer):
    plan = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Plan.objects.filter(is_active=True),
        error_messages={"does_not_exist": "Unknown plan {value!r}; GET /api/v1/plans lists them."},
    )


class UpdateSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=128, help_text="Image tag of the app, e.g. 1.1.")


class BackupSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid")

    class Meta:
        model = Backup
        fields = ["id", "kind", "app_version", "size_bytes", "created_at"]


class SiteLifecycleActions:
    """Actions mixed into the site viewset; ``get_object`` scopes them to the caller."""

    if TYPE_CHECKING:
        # Provided by GenericViewSet, which the site viewset also inherits from.
        def get_object(self) -> Site: ...

    def _accepted(self, request: Request, operation) -> Response:
        from hosting.api.views import accepted

        site = operation.site
        site.refresh_from_db()
        return accepted(request, site, operation)

    def _input(self, serializer_class, request: Request) -> dict:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    @extend_schema(request=SuspendSerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, site_id: str) -> Response:
        """Stop the site and keep it stopped; ``reason`` is billing, quota or staff."""
        # Look the site up first, so another organization's id gets 404 whatever the body.
        site = self.get_object()
        data = self._input(SuspendSerializer, request)
        operation = lifecycle.suspend_site(
            site=site, reason=data["reason"], requested_by=self._caller(request)
        )
        return self._accepted(request, operation)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def unsuspend(self, request: Request, site_id: str) -> Response:
        operation = lifecycle.unsuspend_site(
            site=self.get_object(), requested_by=self._caller(request)
        )
        return self._accepted(request, operation)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, site_id: str) -> Response:
        operation = lifecycle.restart_site(
            site=self.get_object(), requested_by=self._caller(request)
        )
        return self._accepted(request, operation)

    @extend_schema(request=ChangePlanSerializer)
    @action(detail=True, methods=["post"], url_path="change-plan")
    def change_plan(self, request: Request, site_id: str) -> Response:
        """Move the site to another plan; its limits change without a restart."""
        # Look the site up first, so another organization's id gets 404 whatever the body.
        site = self.get_object()
        data = self._input(ChangePlanSerializer, request)
        operation = lifecycle.change_plan(
            site=site, plan=data["plan"], requested_by=self._caller(request)
        )
        return self._accepted(request, operation)

    @extend_schema(request=UpdateSerializer)
    # Not named "update": the router would route PUT /sites/{id} to it.
    @action(detail=True, methods=["post"], url_path="update")
    def update_version(self, request: Request, site_id: str) -> Response:
        """Update the app version; a failed update is rolled back with its data."""
        # Look the site up first, so another organization's id gets 404 whatever the body.
        site = self.get_object()
        data = self._input(UpdateSerializer, request)
        operation = lifecycle.update_site(
            site=site, version=data["version"], requested_by=self._caller(request)
        )
        return self._accepted(request, operation)

    @extend_schema(request=None, responses={200: BackupSerializer(many=True)})
    @action(detail=True, methods=["get", "post"])
    def backups(self, request: Request, site_id: str) -> Response:
        """GET lists the site's backups; POST backs the site up now."""
        site = self.get_object()
        if request.method == "POST":
            operation = lifecycle.back_up_site(site=site, requested_by=self._caller(request))
            return self._accepted(request, operation)
        backups = site.backups.filter(deleted_at__isnull=True)[:100]
        return Response(BackupSerializer(backups, many=True).data)

    @extend_schema(request=None)
    @action(
        detail=True,
        methods=["post"],
        url_path=r"backups/(?P<backup_id>[0-9a-f-]{36})/restore",
        url_name="backup-restore",
    )
    def restore_backup(self, request: Request, site_id: str, backup_id: str) -> Response:
        """Replace the site's data with one of its backups."""
        site = self.get_object()
        backup = get_object_or_404(Backup, uuid=backup_id, site=site)
        operation = lifecycle.restore_backup(
            site=site, backup=backup, requested_by=self._caller(request)
        )
        return self._accepted(request, operation)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"], url_path="undo-terminate")
    def undo_terminate(self, request: Request, site_id: str) -> Response:
        """Bring a terminated site back from its kept data, before the purge."""
        operation = lifecycle.undo_terminate(
            site=self.get_object(), requested_by=self._caller(request)
        )
        return self._accepted(request, operation)

    def _caller(self, request: Request) -> str:
        from hosting.api.views import caller_name

        return caller_name(request)
