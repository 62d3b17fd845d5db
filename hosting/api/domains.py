"""Custom domains of a site: list, add, remove.

The site is looked up within the caller's organization, so another organization's
site returns 404. Adding and removing only record the request; workers check DNS,
order the certificate and change the edge.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from hosting import domains
from hosting.api.views import caller_organization
from hosting.models import Domain, Site


class DomainInputSerializer(serializers.Serializer):
    """Input of ``POST /sites/{id}/domains``."""

    domain = serializers.CharField(
        max_length=1000,
        trim_whitespace=True,
        help_text="A domain you own, e.g. 'blog.example.org' or 'bücher.example'.",
    )


class DomainSerializer(serializers.ModelSerializer):
    """A custom domain with the outcome of its last check; no certificate material."""

    domain = serializers.CharField(source="name")
    unicode = serializers.CharField(source="unicode_name")
    reason = serializers.CharField(source="status_reason")
    certificate_expires_at = serializers.DateTimeField(
        source="certificate.not_after", default=None, read_only=True
    )

    class Meta:
        model = Domain
        fields = [
            "domain",
            "unicode",
            "status",
            "reason",
            "found",
            "checked_at",
            "check_attempts",
            "check_deadline",
            "verified_at",
            "activated_at",
            "certificate_expires_at",
            "created_at",
        ]


def _site(request: Request, site_id: str) -> Site:
    return get_object_or_404(Site, uuid=site_id, organization=caller_organization(request))


class SiteDomainsView(APIView):
    @extend_schema(responses={200: DomainSerializer(many=True)})
    def get(self, request: Request, site_id: str) -> Response:
        """List the site's domains with their status and the last check's reason."""
        site = _site(request, site_id)
        rows = site.domains.select_related("certificate").order_by("name")
        return Response(DomainSerializer(rows, many=True).data)

    @extend_schema(request=DomainInputSerializer, responses={202: DomainSerializer})
    def post(self, request: Request, site_id: str) -> Response:
        """Add a domain: 202 while it is checked, 200 if the site already has it."""
        site = _site(request, site_id)
        payload = DomainInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        domain, created = domains.add_domain(site=site, raw_name=payload.validated_data["domain"])

        location = reverse("site-domains", args=[site.uuid], request=request)
        answer = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        return Response(
            DomainSerializer(domain).data, status=answer, headers={"Location": location}
        )


class SiteDomainDetailView(APIView):
    @extend_schema(responses={202: DomainSerializer})
    def delete(self, request: Request, site_id: str, domain: str) -> Response:
        """Remove a domain: a worker takes it off the edge, then it disappears from the list."""
        site = _site(request, site_id)
        removed = domains.remove_domain(site=site, raw_name=domain)
        return Response(DomainSerializer(removed).data, status=status.HTTP_202_ACCEPTED)
