"""DNS steps: publish and remove the site's platform hostname."""

from typing import Any

from django.conf import settings

from provisioning.drivers import registry
from provisioning.engine.steps import SkipStep, StepContext, step

NO_DNS = "No DNS driver is configured (HOSTYARD_DNS_DRIVER=none): records are managed elsewhere."


def _remove_dns(ctx: StepContext) -> dict[str, Any]:
    if not registry.dns_enabled():
        raise SkipStep(NO_DNS)
    driver = registry.dns()
    removed = {
        rdtype: driver.delete_record(name=ctx.site.hostname, type=rdtype)
        for rdtype in ("A", "AAAA")
    }
    return {"removed": removed}


@step("publish_dns", undo=_remove_dns)
def publish_dns(ctx: StepContext) -> dict[str, Any]:
    """Point ``<label>.<platform zone>`` at the edge: A, and AAAA when the platform has IPv6.

    Idempotent: the driver replaces its own record of the same name and type, so a
    repeated run leaves one record. A stale managed AAAA is removed when IPv6 is off.
    """
    if not registry.dns_enabled():
        raise SkipStep(NO_DNS)
    driver = registry.dns()
    name, ttl = ctx.site.hostname, settings.HOSTYARD_DNS_TTL

    records = [
        driver.ensure_record(name=name, type="A", value=settings.HOSTYARD_PUBLIC_IPV4, ttl=ttl)
    ]
    if settings.HOSTYARD_PUBLIC_IPV6:
        records.append(
            driver.ensure_record(
                name=name, type="AAAA", value=settings.HOSTYARD_PUBLIC_IPV6, ttl=ttl
            )
        )
    else:
        driver.delete_record(name=name, type="AAAA")
    return {"records": [{"name": r.name, "type": r.type, "value": r.value} for r in records]}


step("remove_dns")(_remove_dns)
