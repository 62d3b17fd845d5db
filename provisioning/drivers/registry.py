"""Build the configured drivers once per process."""

from functools import cache

from django.conf import settings

from provisioning.drivers.acme.client import AcmeClient
from provisioning.drivers.acme.factory import build_acme_client
from provisioning.drivers.dns.base import DnsDriver
from provisioning.drivers.dns.factory import build_dns_driver
from provisioning.drivers.edge.base import EdgeDriver
from provisioning.drivers.edge.factory import build_edge_driver
from provisioning.drivers.runtime.docker_engine import DockerRuntime


@cache
def runtime() -> DockerRuntime:
    return DockerRuntime(
        base_url=settings.DOCKER_HOST,
        network=settings.HOSTYARD_SITE_NETWORK,
        deployment=settings.HOSTYARD_DEPLOYMENT,
        network_internal=settings.HOSTYARD_SITE_NETWORK_INTERNAL,
        container_dns=settings.HOSTYARD_CONTAINER_DNS,
        timeout=settings.HOSTYARD_DOCKER_TIMEOUT_SECONDS,
    )


def dns_enabled() -> bool:
    """Return False when ``HOSTYARD_DNS_DRIVER`` is "none": no record is published."""
    return str(settings.HOSTYARD_DNS_DRIVER).strip().lower() != "none"


def edge_enabled() -> bool:
    """Return False when ``HOSTYARD_EDGE_DRIVER`` is "none": routing and TLS live elsewhere."""
    return str(settings.HOSTYARD_EDGE_DRIVER).strip().lower() != "none"


@cache
def dns() -> DnsDriver:
    """Return the DNS driver; raises ``PermanentError`` when its settings are incomplete."""
    return build_dns_driver(settings)


@cache
def edge() -> EdgeDriver:
    return build_edge_driver(settings)


@cache
def acme() -> AcmeClient:
    """Return the ACME client, answering HTTP-01 on the edge and DNS-01 with the DNS driver."""
    return build_acme_client(
        settings,
        edge=edge() if edge_enabled() else None,
        dns=dns() if dns_enabled() else None,
    )


def reset() -> None:
    """Forget built drivers, so changed settings take effect (tests)."""
    runtime.cache_clear()
    dns.cache_clear()
    edge.cache_clear()
    acme.cache_clear()
