"""Container runtime on one Docker Engine, through the ``docker`` SDK.

Sites run on one bridge network, internal by default so apps have no egress. The
edge proxy reaches each site at its address on that network. Nothing publishes host
ports, so two sites can never collide on a port.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import docker
import requests
import structlog
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from provisioning.drivers.runtime.base import (
    LABEL_DEPLOYMENT,
    LABEL_MANAGED,
    LABEL_ROLE,
    LABEL_SITE,
    ContainerSpec,
    ContainerState,
    container_name,
    site_labels,
    volume_name,
)
from provisioning.errors import PermanentError, TransientError

log = structlog.get_logger(__name__)

# A container that restarted this often while we waited for its health check is
# crash-looping: waiting longer will not help.
CRASH_LOOP_RESTARTS = 2
LOG_TAIL_LINES = 20
REMOVE_ATTEMPTS = 5


@contextmanager
def engine_errors(action: str) -> Iterator[None]:
    """Translate engine failures into transient or permanent provisioning errors."""
    try:
        yield
    except ImageNotFound as exc:
        raise PermanentError(
            f"{action} failed: image not found on the engine. Build or load the image, "
            "or point the catalog entry at an image the engine has.",
            code="image_not_found",
            detail=str(exc),
        ) from exc
    except APIError as exc:
        status = exc.status_code or 0
        if status >= 500 or status == 409:
            raise TransientError(
                f"{action} failed: the Docker Engine returned HTTP {status}.",
                code="engine_error",
                detail=str(exc),
            ) from exc
        raise PermanentError(
            f"{action} failed: the Docker Engine rejected the request ({status}).",
            code="engine_rejected",
            detail=str(exc),
        ) from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise TransientError(
            f"{action} failed: the Docker Engine is unreachable.",
            code="engine_unreachable",
            detail=str(exc),
        ) from exc
    except DockerException as exc:
        raise TransientError(
            f"{action} failed: {exc}", code="engine_error", detail=str(exc)
        ) from exc


class DockerRuntime:
    """``ContainerRuntime`` on one Docker Engine. Every method is idempotent."""

    def __init__(
        self,
        *,
        base_url: str,
        network: str,
        deployment: str = "default",
        network_internal: bool = True,
        container_dns: list[str] | None = None,
        timeout: int = 60,
    ) -> None:
        self.base_url = base_url
        self.network = network
        self.deployment = deployment
        self.network_internal = network_internal
        self.container_dns = container_dns or []
        self.timeout = timeout
        self._client: docker.DockerClient | None = None
        self._network_lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            with engine_errors("Connecting to the Docker Engine"):
                self._client = docker.DockerClient(base_url=self.base_url, timeout=self.timeout)
        return self._client

    # --- lookups ------------------------------------------------------------------

    def find_container(self, site_uuid: str) -> Container | None:
        """Return the site's app container, found by label, or None."""
        with engine_errors("Listing containers"):
            found = self.client.containers.list(
                all=True,
                filters={
                    "label": [
                        f"{LABEL_DEPLOYMENT}={self.deployment}",
                        f"{LABEL_SITE}={site_uuid}",
                        f"{LABEL_ROLE}=app",
                    ]
                },
            )
        if len(found) > 1:
            # Only a bug or a hand-made container can cause this; keep the oldest.
            log.error("duplicate site containers", site=site_uuid, count=len(found))
            found.sort(key=lambda c: c.attrs.get("Created", ""))
        return found[0] if found else None

    def list_site_containers(self) -> list[ContainerState]:
        """List every Hostyard container in one engine call."""
        with engine_errors("Listing containers"):
            rows = self.client.api.containers(
                all=True, filters={"label": f"{LABEL_DEPLOYMENT}={self.deployment}"}
            )
        return [
            ContainerState(
                container_id=row["Id"],
                site_uuid=row.get("Labels", {}).get(LABEL_SITE, ""),
                name=(row.get("Names") or ["/"])[0].lstrip("/"),
                image=row.get("Image", ""),
                state=row.get("State", ""),
                labels=row.get("Labels", {}),
            )
            for row in rows
        ]

    # --- creation -----------------------------------------------------------------

    def ensure_network(self) -> str:
        """Create the sites' bridge network unless it exists; return its id."""
        with self._network_lock, engine_errors("Creating the site network"):
            existing = self.client.networks.list(names=[self.network])
            exact = [n for n in existing if n.name == self.network]
            if exact:
                return str(exact[0].id)
            network = self.client.networks.create(
                self.network,
                driver="bridge",
                internal=self.network_internal,
                check_duplicate=True,
                labels={LABEL_MANAGED: "1", LABEL_ROLE: "network"},
            )
            return str(network.id)

    def ensure_volume(self, *, site_uuid: str) -> str:
        """Create the site's data volume unless it exists; return its name."""
        name = volume_name(site_uuid)
        with engine_errors("Creating the data volume"):
            try:
                self.client.volumes.get(name)
            except NotFound:
                self.client.volumes.create(
                    name=name,
                    labels=site_labels(site_uuid, deployment=self.deployment, role="data"),
                )
        return name

    def ensure_container(self, *, spec: ContainerSpec) -> ContainerState:
        """Create the site's container unless one with its label exists.

        A name conflict (another worker created it a moment ago) is resolved by a
        lookup, not an error.
        """
        existing = self.find_container(spec.site_uuid)
        if existing is not None:
            return self._state(existing)

        self.ensure_network()
        volume = self.ensure_volume(site_uuid=spec.site_uuid)
        try:
            with engine_errors("Creating the container"):
                container = self.client.containers.create(
                    spec.image,
                    name=container_name(spec.site_uuid),
                    labels=site_labels(spec.site_uuid, deployment=self.deployment),
                    environment=spec.environment,
                    volumes={volume: {"bind": spec.data_path, "mode": "rw"}},
                    network=self.network,
                    dns=self.container_dns,
                    mem_limit=f"{spec.memory_mb}m",
                    memswap_limit=f"{spec.memory_mb}m",
                    nano_cpus=int(spec.cpus * 1_000_000_000),
                    pids_limit=spec.pids_limit,
                    cap_drop=["ALL"],
                    cap_add=spec.capabilities or None,
                    security_opt=["no-new-privileges:true"],
                    privileged=False,
                    init=True,
                    restart_policy={"Name": "unless-stopped"},
                )
        except TransientError as exc:
            found = self.find_container(spec.site_uuid)
            if found is None:
                raise
            log.info("container created concurrently", site=spec.site_uuid, error=exc.message)
            container = found
        return self._state(container)

    def start_container(self, *, site_uuid: str) -> ContainerState:
        container = self._require(site_uuid)
        if container.status != "running":
            with engine_errors("Starting the container"):
                container.start()
                container.reload()
        return self._state(container)

    def wait_healthy(self, *, site_uuid: str, port: int, path: str, timeout: float) -> str:
        """Wait until ``http://<container address>:<port><path>`` returns a status below 400.

        Returns the address as ``ip:port``. Raises PermanentError with the
        container's last log lines if it exits or crash-loops, or does not respond
        within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        last_problem = "no response yet"
        while time.monotonic() < deadline:
            container = self._require(site_uuid)
            self._raise_if_crashed(container)
            address = self.container_address(container)
            if address:
                try:
                    answer = requests.get(
                        f"http://{address}:{port}{path}", timeout=2, allow_redirects=False
                    )
                except requests.RequestException as exc:
                    last_problem = type(exc).__name__
                else:
                    if answer.status_code < 400:
                        return f"{address}:{port}"
                    last_problem = f"HTTP {answer.status_code}"
            time.sleep(0.2)

        raise PermanentError(
            f"The app did not respond to its health check {path} within {timeout:.0f} s "
            f"(last: {last_problem}).",
            code="health_check_timeout",
            detail=self._log_tail(site_uuid),
        )

    # --- removal ------------------------------------------------------------------

    def stop_container(self, *, site_uuid: str) -> bool:
        container = self.find_container(site_uuid)
        if container is None:
            return False
        with engine_errors("Stopping the container"):
            container.stop(timeout=10)
        return True

    def remove_container(self, *, site_uuid: str) -> bool:
        """Remove the site's container; return False if there was none."""
        container = self.find_container(site_uuid)
        if container is None:
            return False
        for attempt in range(REMOVE_ATTEMPTS):
            try:
                # v=True also removes anonymous volumes an image declares; the named
                # data volume stays until remove_volume.
                container.remove(force=True, v=True)
                return True
            except NotFound:
                return False
            except APIError as exc:
                # The engine returns 409 for a container that is restarting: turn its
                # restart policy off and kill it, then remove it again.
                if exc.status_code != 409 or attempt == REMOVE_ATTEMPTS - 1:
                    with engine_errors("Removing the container"):
                        raise
                self._halt_restarts(container)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
                with engine_errors("Removing the container"):
                    raise
        return True

    def _halt_restarts(self, container: Container) -> None:
        try:
            container.update(restart_policy={"Name": "no"})
            container.kill()
        except (APIError, NotFound):
            pass
        time.sleep(0.5)

    def remove_volume(self, *, site_uuid: str) -> bool:
        """Remove the site's data volume; return False if there was none."""
        with engine_errors("Removing the data volume"):
            try:
                self.client.volumes.get(volume_name(site_uuid)).remove(force=True)
            except NotFound:
                return False
        return True

    # --- helpers ------------------------------------------------------------------

    def _require(self, site_uuid: str) -> Container:
        container = self.find_container(site_uuid)
        if container is None:
            raise TransientError(
                f"No container found for site {site_uuid}.", code="container_missing"
            )
        return container

    def container_address(self, container: Container) -> str:
        """Return the container's IPv4 address on the sites' network, or an empty string."""
        networks = container.attrs.get("NetworkSettings", {}).get("Networks", {})
        return str(networks.get(self.network, {}).get("IPAddress") or "")

    def _raise_if_crashed(self, container: Container) -> None:
        state = container.attrs.get("State", {})
        restarts = int(container.attrs.get("RestartCount", 0))
        crashed = state.get("Status") == "exited" or restarts >= CRASH_LOOP_RESTARTS
        if not crashed:
            return
        raise PermanentError(
            f"The app's container exited with code {state.get('ExitCode')} "
            f"after {restarts} restarts instead of responding to its health check.",
            code="container_exited",
            detail=self._log_tail(container.labels.get(LABEL_SITE, "")),
        )

    def _log_tail(self, site_uuid: str) -> str:
        container = self.find_container(site_uuid)
        if container is None:
            return ""
        try:
            raw = container.logs(tail=LOG_TAIL_LINES)
        except (DockerException, requests.RequestException):
            return ""
        return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)

    def _state(self, container: Container) -> ContainerState:
        return ContainerState(
            container_id=str(container.id),
            site_uuid=container.labels.get(LABEL_SITE, ""),
            name=container.name or "",
            image=container.attrs.get("Config", {}).get("Image", ""),
            state=container.status,
            labels=dict(container.labels),
        )
