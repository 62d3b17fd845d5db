"""Measure every site's disk, memory, restarts and OOM kills with few engine calls.

A scan makes three engine calls whatever the number of sites:

- ``GET /system/df``: the size of every volume (``UsageData.Size``). The engine
  walks each volume's files to compute it, so its cost grows with the files
  stored, not with the number of calls.
- ``GET /containers/json``: every container of this deployment, with its state.
- ``GET /events`` for ``oom`` and ``die`` events since the previous scan.

It then inspects only the containers that are not running, that died since the
previous scan, or that the caller asks about, to read ``RestartCount`` and
``State.OOMKilled``.

Memory and the kernel's OOM kill counter come from the cgroup files of running
containers when the control plane runs on the engine's host: one small read per
container. Otherwise memory comes from one ``stats`` call per running container
with ``one_shot`` (the engine reads the same files). OOM kills are also counted
from the events, which see a kill that ended a container before its restart reset
the cgroup. Docker Engine 20.10 keeps only its latest 256 events in memory, and
health checks alone add four per container and interval. So on a busy engine,
events between two scans can be lost.
"""

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests
import structlog
from docker.errors import DockerException, NotFound

from provisioning.drivers.runtime.base import LABEL_DEPLOYMENT, LABEL_ROLE, LABEL_SITE
from provisioning.drivers.runtime.docker_engine import DockerRuntime, engine_errors

log = structlog.get_logger(__name__)

MEMORY_SOURCES = ("auto", "cgroup", "stats", "off")
# States in which the listing alone cannot tell whether the container is healthy.
INSPECT_STATES = frozenset({"restarting", "exited", "dead"})
NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True)
class ContainerUsage:
    """One site container as the scan saw it."""

    site_uuid: str
    container_id: str
    state: str
    memory_bytes: int | None = None
    # The cgroup's cumulative OOM kill counter, when cgroup files were readable.
    oom_counter: int | None = None
    # RestartCount and OOMKilled are read only when the container was inspected.
    inspected: bool = False
    restart_count: int = 0
    oom_killed: bool = False


@dataclass
class EngineUsage:
    """Everything one scan measured on the engine, by site uuid."""

    volume_bytes: dict[str, int] = field(default_factory=dict)
    containers: dict[str, ContainerUsage] = field(default_factory=dict)
    oom_events: dict[str, int] = field(default_factory=dict)
    # Events up to this time (ns since the epoch) were read; the next scan starts here.
    events_until_ns: int = 0
    engine_calls: int = 0


class DockerUsageProbe:
    """Read usage of one deployment's sites from one Docker Engine."""

    def __init__(
        self,
        runtime: DockerRuntime,
        *,
        memory_source: str = "auto",
        cgroup_root: str = "/sys/fs/cgroup",
    ) -> None:
        if memory_source not in MEMORY_SOURCES:
            raise ValueError(
                f"Unknown memory source {memory_source!r}; use one of {', '.join(MEMORY_SOURCES)}."
            )
        self.runtime = runtime
        self.memory_source = memory_source
        self.cgroup_root = Path(cgroup_root)

    @property
    def deployment_filter(self) -> str:
        return f"{LABEL_DEPLOYMENT}={self.runtime.deployment}"

    def measure(
        self, *, events_since_ns: int, inspect_sites: set[str] | None = None
    ) -> EngineUsage:
        """Measure all sites; raises TransientError if the engine is unreachable.

        Containers of ``inspect_sites`` are inspected even when they look healthy, so
        a restart count recorded earlier can be seen to fall back.
        """
        inspect_sites = inspect_sites or set()
        usage = EngineUsage()
        usage.volume_bytes = self.volume_sizes()
        rows = self.list_containers()
        usage.oom_events, died, usage.events_until_ns = self.container_events(events_since_ns)
        usage.engine_calls = 3

        for row in rows:
            labels = row.get("Labels") or {}
            site_uuid = labels.get(LABEL_SITE, "")
            if not site_uuid or labels.get(LABEL_ROLE, "app") != "app":
                continue
            container = ContainerUsage(
                site_uuid=site_uuid, container_id=row["Id"], state=row.get("State", "")
            )
            if container.state in INSPECT_STATES or site_uuid in died or site_uuid in inspect_sites:
                container = self._with_restarts(container)
                usage.engine_calls += 1
            if container.state == "running":
                container, calls = self._with_memory(container)
                usage.engine_calls += calls
            usage.containers[site_uuid] = container
        return usage

    def volume_sizes(self) -> dict[str, int]:
        """Return the size in bytes of every data volume of this deployment, by site uuid.

        The engine reports -1 for a volume whose size it could not compute. The
        site's entry is then -1 too, so the scan keeps its previous figure.
        """
        with engine_errors("Reading disk use"):
            report = self.runtime.client.df()
        sizes: dict[str, int] = {}
        for volume in report.get("Volumes") or []:
            labels = volume.get("Labels") or {}
            if labels.get(LABEL_DEPLOYMENT) != self.runtime.deployment:
                continue
            site_uuid = labels.get(LABEL_SITE)
            size = int((volume.get("UsageData") or {}).get("Size", -1))
            if not site_uuid:
                continue
            if size < 0 or sizes.get(site_uuid, 0) < 0:
                sizes[site_uuid] = -1
            else:
                sizes[site_uuid] = sizes.get(site_uuid, 0) + size
        return sizes

    def list_containers(self) -> list[dict[str, Any]]:
        with engine_errors("Listing containers"):
            return list(
                self.runtime.client.api.containers(
                    all=True, filters={"label": self.deployment_filter}
                )
            )

    def container_events(self, since_ns: int) -> tuple[dict[str, int], set[str], int]:
        """Count ``oom`` events per site and collect sites with ``die`` events.

        Reads events after ``since_ns`` up to now; returns (OOM counts, sites whose
        container died, the time read up to in ns). The engine keeps only its most
        recent events in memory, so a first scan (``since_ns`` 0) reads what it still has.
        """
        # NOTE: the window uses this host's clock. With the engine on another host,
        # clock skew shifts it, so a few events may be counted twice or missed.
        until_ns = time.time_ns()
        since = f"{since_ns // NS_PER_SECOND}.{since_ns % NS_PER_SECOND:09d}" if since_ns else 0
        until = f"{until_ns // NS_PER_SECOND}.{until_ns % NS_PER_SECOND:09d}"
        filters = {"type": "container", "event": ["oom", "die"], "label": self.deployment_filter}
        oom: dict[str, int] = {}
        died: set[str] = set()
        with engine_errors("Reading container events"):
            for event in self.runtime.client.api.events(
                since=since, until=until, filters=filters, decode=True
            ):
                if int(event.get("timeNano", 0)) <= since_ns:
                    continue
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                site_uuid = attributes.get(LABEL_SITE)
                if not site_uuid:
                    continue
                if event.get("Action") == "oom":
                    oom[site_uuid] = oom.get(site_uuid, 0) + 1
                else:
                    died.add(site_uuid)
        return oom, died, until_ns

    def _with_restarts(self, container: ContainerUsage) -> ContainerUsage:
        try:
            with engine_errors("Inspecting a container"):
                attrs = self.runtime.client.api.inspect_container(container.container_id)
        except NotFound:
            return container
        state = attrs.get("State") or {}
        return replace(
            container,
            state=state.get("Status", container.state),
            inspected=True,
            restart_count=int(attrs.get("RestartCount", 0)),
            oom_killed=bool(state.get("OOMKilled", False)),
        )

    def _with_memory(self, container: ContainerUsage) -> tuple[ContainerUsage, int]:
        """Add memory use (and the cgroup's OOM counter); return it with the engine calls made."""
        if self.memory_source == "off":
            return container, 0
        if self.memory_source in ("auto", "cgroup"):
            reading = read_cgroup(self.cgroup_root, container.container_id)
            if reading is not None:
                return replace(
                    container, memory_bytes=reading.memory_bytes, oom_counter=reading.oom_kills
                ), 0
            if self.memory_source == "cgroup":
                return container, 0
        return replace(container, memory_bytes=self._stats_memory(container.container_id)), 1

    def _stats_memory(self, container_id: str) -> int | None:
        try:
            stats = self.runtime.client.api.stats(container_id, stream=False, one_shot=True)
        except (DockerException, requests.RequestException) as exc:
            log.warning("memory stats unavailable", container=container_id, error=str(exc))
            return None
        memory = stats.get("memory_stats") or {}
        if "usage" not in memory:
            return None
        details = memory.get("stats") or {}
        # The same figure as `docker stats`: usage without inactive page cache.
        cache = details.get("total_inactive_file", details.get("inactive_file", 0))
        return max(int(memory["usage"]) - int(cache), 0)


@dataclass(frozen=True)
class CgroupReading:
    """Memory figures of one container read from its cgroup files."""

    memory_bytes: int
    # Processes the kernel's OOM killer killed in this cgroup since it was created.
    oom_kills: int | None


# (directory under the cgroup root, usage file, inactive cache key, OOM counter file)
CGROUP_LAYOUTS = (
    ("memory/docker/{id}", "memory.usage_in_bytes", "total_inactive_file", "memory.oom_control"),
    ("docker/{id}", "memory.current", "inactive_file", "memory.events"),
    ("system.slice/docker-{id}.scope", "memory.current", "inactive_file", "memory.events"),
)


def _stat_value(text: str, key: str) -> int | None:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def read_cgroup(root: Path, container_id: str) -> CgroupReading | None:
    """Read a container's memory use and OOM kill count, or None if no file is readable.

    Knows cgroup v1 with the cgroupfs driver and cgroup v2 with the cgroupfs or
    systemd driver. Memory excludes inactive page cache, as ``docker stats`` does.
    The OOM counter (``oom_kill``) needs Linux 4.13 or later; it is None otherwise.
    """
    for layout, usage_file, cache_key, oom_file in CGROUP_LAYOUTS:
        directory = root / layout.format(id=container_id)
        try:
            usage = int((directory / usage_file).read_text().strip())
            stat = (directory / "memory.stat").read_text()
            oom_text = (directory / oom_file).read_text()
        except (OSError, ValueError):
            continue
        cache = _stat_value(stat, cache_key) or 0
        return CgroupReading(
            memory_bytes=max(usage - cache, 0), oom_kills=_stat_value(oom_text, "oom_kill")
        )
    return None
