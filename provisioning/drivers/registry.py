"""Build the configured drivers once per process."""

from functools import cache

from django.conf import settings

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


def reset() -> None:
    """Forget built drivers, so changed settings take effect (tests)."""
    runtime.cache_clear()
