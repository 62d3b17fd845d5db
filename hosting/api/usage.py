"""Current use against limits: per site, and the organization's totals.

Figures come from the latest usage scan (``SiteUsage``), taken at ``measured_at``.
Both views run a fixed number of queries whatever the number of sites.
"""

from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hosting.api.views import caller_organization
from hosting.models import Site, SiteStatus
from provisioning.usage_models import MIB, SiteUsage


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / MIB, 2)


def _percent(used: float | None, limit: float | None) -> float | None:
    if used is None or not limit:
        return None
    return round(used * 100 / limit, 1)


def _warnings(site: Site, usage: SiteUsage | None) -> list[dict[str, Any]]:
    """List what the customer should act on, most severe first."""
    if usage is None:
        return []
    found: list[dict[str, Any]] = []
    if site.suspend_reason:
        found.append({"code": "suspended", "reason": site.suspend_reason})
    if usage.over_quota_since is not None:
        found.append({"code": "disk_quota_exceeded", "since": usage.over_quota_since})
    elif usage.disk_warning_percent:
        found.append({"code": "disk_warning", "threshold": usage.disk_warning_percent})
    if usage.restart_loop_at is not None:
        found.append({"code": "restart_loop", "since": usage.restart_loop_at})
    if usage.oom_kills:
        found.append({"code": "oom_killed", "count": usage.oom_kills, "last": usage.last_oom_at})
    return found


def site_usage_body(site: Site) -> dict[str, Any]:
    """Describe one site's measured use next to its plan's limits."""
    usage: SiteUsage | None = getattr(site, "usage", None)
    plan = site.plan
    disk_mb = _mib(usage.disk_bytes) if usage else None
    memory_mb = _mib(usage.memory_bytes) if usage else None
    return {
        "site": str(site.uuid),
        "hostname": site.hostname,
        "plan": plan.slug,
        "status": site.status,
        "suspend_reason": site.suspend_reason,
        "measured_at": usage.measured_at if usage else None,
        "disk": {
            "used_mb": disk_mb,
            "volume_mb": _mib(usage.volume_bytes) if usage else None,
            "backups_mb": _mib(usage.backup_bytes) if usage else None,
            "limit_mb": plan.disk_mb,
            "percent": _percent(disk_mb, plan.disk_mb),
            "warning_percents": sorted(settings.HOSTYARD_DISK_WARNING_PERCENTS),
            "over_quota_since": usage.over_quota_since if usage else None,
        },
        "memory": {
            "used_mb": memory_mb,
            "limit_mb": plan.memory_mb,
            "percent": _percent(memory_mb, plan.memory_mb),
        },
        "cpus": str(plan.cpus),
        "pids_limit": plan.pids_limit,
        "container_state": usage.container_state if usage else "",
        "oom_kills": usage.oom_kills if usage else 0,
        "restart_count": usage.restart_count if usage else 0,
        "warnings": _warnings(site, usage),
    }


class SiteUsageView(APIView):
    """``GET /api/v1/sites/{id}/usage``: the site's latest measured use and its limits."""

    @extend_schema(responses={200: dict})
    def get(self, request: Request, site_id: str) -> Response:
        sites = Site.objects.filter(organization=caller_organization(request)).select_related(
            "plan", "usage"
        )
        site = get_object_or_404(sites, uuid=site_id)
        return Response(site_usage_body(site))


class OrganizationUsageView(APIView):
    """``GET /api/v1/usage``: the organization's totals against its caps."""

    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        organization = caller_organization(request)
        live = Site.objects.filter(
            organization=organization, status__in=SiteStatus.live()
        ).aggregate(
            sites=Count("id"),
            memory_mb=Sum("plan__memory_mb"),
            disk_mb=Sum("plan__disk_mb"),
            volume_bytes=Sum("usage__volume_bytes"),
            backup_bytes=Sum("usage__backup_bytes"),
            memory_bytes=Sum("usage__memory_bytes"),
            oom_kills=Sum("usage__oom_kills"),
            warned=Count("id", filter=Q(usage__disk_warning_percent__gt=0)),
            over_quota=Count("id", filter=Q(usage__over_quota_since__isnull=False)),
            suspended=Count("id", filter=Q(status=SiteStatus.SUSPENDED)),
        )
        disk_used = (live["volume_bytes"] or 0) + (live["backup_bytes"] or 0)
        return Response(
            {
                "organization": organization.slug,
                "sites": {"used": live["sites"], "limit": organization.max_sites},
                "memory": {
                    "allocated_mb": live["memory_mb"] or 0,
                    "used_mb": _mib(live["memory_bytes"] or 0),
                    "limit_mb": organization.max_memory_mb,
                },
                "disk": {
                    "allocated_mb": live["disk_mb"] or 0,
                    "used_mb": _mib(disk_used),
                    "limit_mb": organization.max_disk_mb,
                },
                "sites_with_disk_warning": live["warned"],
                "sites_over_disk_quota": live["over_quota"],
                "sites_suspended": live["suspended"],
                "oom_kills": live["oom_kills"] or 0,
            }
        )


urlpatterns = [
    path("sites/<uuid:site_id>/usage", SiteUsageView.as_view(), name="site-usage"),
    path("usage", OrganizationUsageView.as_view(), name="organization-usage"),
]
