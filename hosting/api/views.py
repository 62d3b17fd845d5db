"""Sites, operations and the catalog, scoped to the caller's organization.

Every queryset is filtered by the API key's organization, so another organization's
id gets 404 exactly like an id that does not exist.
"""

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from hosting import services
from hosting.api.filters import SiteFilter
from hosting.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from hosting.api.idempotency import run_idempotently
from hosting.api.lifecycle import SiteLifecycleActions
from hosting.api.serializers import (
    AcceptedSiteSerializer,
    AppSerializer,
    OperationSerializer,
    PlanSerializer,
    SignupSerializer,
    SiteSerializer,
)
from hosting.models import ApiKey, App, Organization, Plan, Site
from provisioning.models import Operation


def caller_organization(request: Request) -> Organization:
    key = request.auth
    assert isinstance(key, ApiKey)  # guaranteed by HasOrganizationKey
    return key.organization


def caller_name(request: Request) -> str:
    key = request.auth
    return f"api-key:{key.prefix}" if isinstance(key, ApiKey) else "api"


def accepted(request: Request, site: Site, operation: Operation) -> Response:
    """Respond 202 with the site and a link to the operation that will carry out the change."""
    context = {"request": request, "operation": operation}
    body = AcceptedSiteSerializer(site, context=context).data
    location = reverse("operation-detail", args=[operation.uuid], request=request)
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


class SiteViewSet(
    SiteLifecycleActions,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = SiteSerializer
    lookup_field = "uuid"
    lookup_url_kwarg = "site_id"
    filterset_class = SiteFilter

    def get_queryset(self) -> QuerySet[Site]:
        return Site.objects.filter(organization=caller_organization(self.request)).select_related(
            "app", "plan", "customer"
        )

    @extend_schema(
        request=SignupSerializer,
        responses={202: AcceptedSiteSerializer},
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER)],
    )
    def create(self, request: Request) -> Response:
        """Sign up a site for a worker to provision; respond 202 with the operation's link."""
        organization = caller_organization(request)

        def sign_up() -> Response:
            signup = SignupSerializer(data=request.data)
            signup.is_valid(raise_exception=True)
            data = signup.validated_data
            site, operation = services.sign_up_site(
                organization=organization,
                customer_email=data["customer_email"],
                customer_name=data["customer_name"],
                customer_external_id=data["customer_external_id"],
                app=data["app"],
                plan=data["plan"],
                label=data.get("label"),
                requested_by=caller_name(request),
            )
            return accepted(request, site, operation)

        return run_idempotently(request, organization, sign_up)

    @extend_schema(responses={202: AcceptedSiteSerializer})
    def destroy(self, request: Request, site_id: str) -> Response:
        """Terminate the site: its container and data are removed by a worker."""
        site = self.get_object()
        operation = services.terminate_site(site=site, requested_by=caller_name(request))
        site.refresh_from_db()
        return accepted(request, site, operation)

    @extend_schema(responses={200: OperationSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def operations(self, request: Request, site_id: str) -> Response:
        site = self.get_object()
        operations = site.operations.prefetch_related("steps").select_related("site")
        page = self.paginate_queryset(operations)
        return self.get_paginated_response(OperationSerializer(page, many=True).data)


class OperationViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = OperationSerializer
    lookup_field = "uuid"
    lookup_url_kwarg = "operation_id"
    filterset_fields = ["status", "kind"]

    def get_queryset(self) -> QuerySet[Operation]:
        organization = caller_organization(self.request)
        return (
            Operation.objects.filter(site__organization=organization)
            .select_related("site")
            .prefetch_related("steps")
        )


class PlanViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PlanSerializer
    queryset = Plan.objects.filter(is_active=True)
    lookup_field = "slug"
    pagination_class = None


class AppViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AppSerializer
    queryset = App.objects.filter(is_active=True)
    lookup_field = "slug"
    pagination_class = None
