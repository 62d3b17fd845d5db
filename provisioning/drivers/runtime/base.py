"""The container runtime interface.

Every resource a runtime creates for a site carries the labels of ``site_labels`` and a
name derived from the site's uuid. Each call first looks up what already exists, so a
step run twice, or after a crash, leaves exactly one container and one volume.
"""

from dataclasses import dataclass, field
from typing import Protocol

LABEL_MANAGED = "hostyard.managed"
LABEL_SITE = "hostyard.site"
LABEL_ROLE = "hostyard.role"
# Several control planes (production, a test run) may share one engine, and each lists
# and removes only resources with its own value.
LABEL_DEPLOYMENT = "hostyard.deployment"


def site_labels(site_uuid: str, *, deployment: str, role: str = "app") -> dict[str, str]:
    return {
        LABEL_MANAGED: "1",
        LABEL_DEPLOYMENT: deployment,
        LABEL_SITE: site_uuid,
        LABEL_ROLE: role,
    }


def container_name(site_uuid: str) -> str:
    return f"hostyard-{site_uuid}"


def volume_name(site_uuid: str) -> str:
    return f"hostyard-{site_uuid}-data"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create a site's container."""

    site_uuid: str
    image: str
    internal_port: int
    data_path: str
    memory_mb: int
    cpus: float
    pids_limit: int
    capabilities: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerState:
    """The engine's report on one site container."""

    container_id: str
    site_uuid: str
    name: str
    image: str
    state: str  # the engine's word: created, running, exited, restarting, ...
    labels: dict[str, str]


class ContainerRuntime(Protocol):
    def ensure_volume(self, *, site_uuid: str) -> str: ...

    def ensure_container(self, *, spec: ContainerSpec) -> ContainerState: ...

    def start_container(self, *, site_uuid: str) -> ContainerState: ...

    def wait_healthy(self, *, site_uuid: str, port: int, path: str, timeout: float) -> str: ...

    def stop_container(self, *, site_uuid: str) -> bool: ...

    def remove_container(self, *, site_uuid: str) -> bool: ...

    def remove_volume(self, *, site_uuid: str) -> bool: ...

    def list_site_containers(self) -> list[ContainerState]: ...
