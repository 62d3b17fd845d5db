"""Edge steps: the site's route, its removal, and the suspended page."""

from typing import Any

from hosting.models import Certificate, Domain, Site
from provisioning import certificates
from provisioning.drivers import registry
from provisioning.engine.steps import SkipStep, StepContext, step
from provisioning.errors import PermanentError
from provisioning.models import OperationStep, StepStatus

NO_EDGE = "No edge proxy is configured (HOSTYARD_EDGE_DRIVER=none): routing is managed elsewhere."


def last_upstream(site: Site) -> str:
    """Return the container address ``ip:port`` of the site's last successful health check.

    Raises ``PermanentError`` when no health check of the site ever succeeded.
    """
    result = (
        OperationStep.objects.filter(
            operation__site=site, name="wait_healthy", status=StepStatus.SUCCEEDED
        )
        .order_by("-finished_at")
        .values_list("result", flat=True)
        .first()
    )
    if not result or not result.get("upstream"):
        raise PermanentError(
            f"Site {site.hostname} has no known container address: run its create operation "
            "so wait_healthy records one.",
            code="edge_no_upstream",
        )
    return str(result["upstream"])


def apply_route(site: Site, upstream: str | None = None) -> dict[str, Any]:
    """Create or replace the site's route to its container for all routed hostnames."""
    upstream = upstream or last_upstream(site)
    hostnames = certificates.routed_hostnames(site)
    registry.edge().ensure_route(site_id=str(site.uuid), hostnames=hostnames, upstream=upstream)
    return {"hostnames": hostnames, "upstream": upstream}


def _remove_route(ctx: StepContext) -> dict[str, Any]:
    if not registry.edge_enabled():
        raise SkipStep(NO_EDGE)
    removed = registry.edge().remove_route(str(ctx.site.uuid))
    # The site's own certificates (hostname, custom domains); the shared wildcard stays.
    owned = list(Certificate.objects.filter(site=ctx.site))
    for certificate in owned:
        certificates.remove_certificate(certificate)
    return {"removed": removed, "certificates_removed": len(owned)}


@step("configure_route", undo=_remove_route)
def configure_route(ctx: StepContext) -> dict[str, Any]:
    """Send the site's hostnames to the container address that wait_healthy found. Idempotent."""
    if not registry.edge_enabled():
        raise SkipStep(NO_EDGE)
    upstream = ctx.results.get("wait_healthy", {}).get("upstream")
    return apply_route(ctx.site, upstream)


@step("edge_suspend")
def edge_suspend(ctx: StepContext) -> dict[str, Any]:
    """Serve the suspended page (HTTP 503) on every hostname of the site. Idempotent."""
    if not registry.edge_enabled():
        raise SkipStep(NO_EDGE)
    hostnames = certificates.routed_hostnames(ctx.site)
    registry.edge().set_suspended(site_id=str(ctx.site.uuid), hostnames=hostnames, suspended=True)
    return {"hostnames": hostnames}


@step("edge_resume")
def edge_resume(ctx: StepContext) -> dict[str, Any]:
    """Stop serving the suspended page, so requests reach the site's route again. Idempotent.

    When an earlier wait_healthy step of the operation found the container's address
    (a restarted container may have a new one), the route is pointed at it first.
    """
    if not registry.edge_enabled():
        raise SkipStep(NO_EDGE)
    result: dict[str, Any] = {}
    upstream = ctx.results.get("wait_healthy", {}).get("upstream")
    if upstream:
        result = apply_route(ctx.site, upstream)

    hostnames = certificates.routed_hostnames(ctx.site)
    registry.edge().set_suspended(site_id=str(ctx.site.uuid), hostnames=hostnames, suspended=False)
    return {**result, "hostnames": hostnames}


@step("remove_route")
def remove_route(ctx: StepContext) -> dict[str, Any]:
    """Remove the site's route and certificates, and release its custom domain names.

    Deleting the domain rows lets another site add those names. Idempotent.
    """
    released, _ = Domain.objects.filter(site=ctx.site).delete()
    if not registry.edge_enabled():
        return {"domains_released": released, "edge": "none"}
    return {**_remove_route(ctx), "domains_released": released}
