import difflib
from typing import Any

from rest_framework import serializers
from rest_framework.reverse import reverse

from hosting.models import App, Plan, Site
from provisioning.models import Operation, OperationStep


class StrictSerializer(serializers.Serializer):
    """Reject fields the serializer does not declare, so a typo never goes unnoticed."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(self.initial_data, dict):
            return attrs
        known = set(self.fields)
        unknown = sorted(set(self.initial_data) - known)
        if unknown:
            errors = {}
            for name in unknown:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                errors[name] = [f"Unknown field.{hint}"]
            raise serializers.ValidationError(errors)
        return attrs


class SignupSerializer(StrictSerializer):
    """Input of ``POST /sites``: who, what app, which plan, and an optional label."""

    # 254 characters is the longest address SMTP allows (RFC 5321) and the column's size.
    customer_email = serializers.EmailField(max_length=254)
    customer_name = serializers.CharField(max_length=200, required=False, default="")
    customer_external_id = serializers.CharField(max_length=100, required=False, default="")
    app = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=App.objects.all(),
        error_messages={"does_not_exist": "Unknown app {value!r}; GET /api/v1/apps lists them."},
    )
    plan = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Plan.objects.all(),
        error_messages={"does_not_exist": "Unknown plan {value!r}; GET /api/v1/plans lists them."},
    )
    # The field shadows Field.label only for the type checker: DRF's metaclass moves
    # declared fields off the class.
    label = serializers.CharField(  # type: ignore[assignment]
        max_length=63,
        required=False,
        allow_blank=False,
        help_text="First label of the site's hostname, e.g. 'myblog'; generated if omitted.",
    )


class OperationLinkSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid")
    url = serializers.SerializerMethodField()
    # The site's earlier active operation that this one waits for, if any.
    queued_behind = serializers.SerializerMethodField()

    class Meta:
        model = Operation
        fields = ["id", "kind", "status", "url", "queued_behind"]

    def get_queued_behind(self, operation: Operation) -> str | None:
        from provisioning.engine.runner import blocking_operation

        blocker = blocking_operation(operation)
        return str(blocker.uuid) if blocker is not None else None

    def get_url(self, operation: Operation) -> str:
        return reverse(
            "operation-detail", args=[operation.uuid], request=self.context.get("request")
        )


class SiteSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid")
    app = serializers.CharField(source="app.slug")
    plan = serializers.CharField(source="plan.slug")
    customer_email = serializers.EmailField(source="customer.email")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Site
        fields = [
            "id",
            "url",
            "hostname",
            "label",
            "status",
            "desired_status",
            "status_reason",
            "suspend_reason",
            "app",
            "app_version",
            "plan",
            "customer_email",
            "created_at",
            "updated_at",
        ]

    def get_url(self, site: Site) -> str:
        return reverse("site-detail", args=[site.uuid], request=self.context.get("request"))


class AcceptedSiteSerializer(SiteSerializer):
    """A site together with the operation that was just opened for it."""

    operation = serializers.SerializerMethodField()

    class Meta(SiteSerializer.Meta):
        fields = [*SiteSerializer.Meta.fields, "operation"]

    def get_operation(self, site: Site) -> dict:
        return OperationLinkSerializer(self.context["operation"], context=self.context).data


class StepSerializer(serializers.ModelSerializer):
    class Meta:
        model = OperationStep
        fields = [
            "position",
            "name",
            "status",
            "attempts",
            "started_at",
            "finished_at",
            "duration_ms",
            "message",
            "error_code",
        ]


class OperationSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid")
    site = serializers.UUIDField(source="site.uuid")
    steps = StepSerializer(many=True)

    class Meta:
        model = Operation
        fields = [
            "id",
            "kind",
            "status",
            "site",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "next_attempt_at",
            "error_code",
            "error_message",
            "steps",
        ]


class PlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = [
            "slug",
            "name",
            "memory_mb",
            "cpus",
            "pids_limit",
            "disk_mb",
            "max_sites_per_customer",
        ]


class AppSerializer(serializers.ModelSerializer):
    class Meta:
        model = App
        fields = ["slug", "name", "default_version", "min_memory_mb"]
