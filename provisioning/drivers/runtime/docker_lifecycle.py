"""Lifecycle calls on one Docker Engine: restart, live limit changes, volume archives.

They extend ``DockerRuntime`` without changing it: each function takes the runtime
and, like its methods, finds containers and volumes by the site's labels, so every
call is safe to repeat.

Volume archives use a helper container from ``HOSTYARD_HELPER_IMAGE`` that is
created but never started: the engine copies files out of (``GET /archive``) and
into (``PUT /archive``) a created container's mounts itself. No process runs, the
helper has no network and no capabilities, and the archive mount is read-only.
"""

import contextlib
import os
import tempfile
from pathlib import Path

import structlog
from docker.errors import NotFound
from docker.models.containers import Container

from provisioning.drivers.runtime.base import (
    LABEL_DEPLOYMENT,
    LABEL_SITE,
    ContainerSpec,
    ContainerState,
    container_name,
    site_labels,
    volume_name,
)
from provisioning.drivers.runtime.docker_engine import DockerRuntime, engine_errors

log = structlog.get_logger(__name__)

MIB = 1024 * 1024
STOP_TIMEOUT_SECONDS = 10
# The archive's top-level directory: the engine names it after the copied path.
ARCHIVE_MOUNT = "/data"


def image_exists(runtime: DockerRuntime, image: str) -> bool:
    """Return whether the engine has ``image`` (no pull: only local or mirrored images run)."""
    with engine_errors("Looking up the image"):
        try:
            runtime.client.images.get(image)
        except NotFound:
            return False
    return True


def helper_name(site_uuid: str) -> str:
    return f"{container_name(site_uuid)}-helper"


def restart_container(runtime: DockerRuntime, *, site_uuid: str) -> ContainerState:
    """Restart the site's container, starting it if it was stopped.

    Raises TransientError (container_missing) if the site has no container.
    """
    container = runtime._require(site_uuid)
    with engine_errors("Restarting the container"):
        container.restart(timeout=STOP_TIMEOUT_SECONDS)
        container.reload()
    return runtime._state(container)


def update_limits(
    runtime: DockerRuntime, *, site_uuid: str, memory_mb: int, cpus: float, pids_limit: int
) -> dict[str, object]:
    """Apply memory, CPU and process limits to the existing container, running or not.

    The SDK's ``update_container`` cannot set ``NanoCpus`` or ``PidsLimit`` (docker
    7.1), and the engine rejects a CPU quota on a container created with NanoCpus,
    so this posts the Engine API's ``/containers/{id}/update`` body itself.
    Idempotent: setting the same limits twice changes nothing.
    """
    container = runtime._require(site_uuid)
    body = {
        "Memory": memory_mb * MIB,
        "MemorySwap": memory_mb * MIB,
        "NanoCpus": int(cpus * 1_000_000_000),
        "PidsLimit": pids_limit,
    }
    api = runtime.client.api
    with engine_errors("Changing the container's limits"):
        response = api._post_json(api._url("/containers/{0}/update", container.id), data=body)
        answer = api._result(response, True)
    return {"limits": body, "warnings": answer.get("Warnings") or []}


def volume_size_bytes(runtime: DockerRuntime, *, site_uuid: str) -> int | None:
    """Return the data volume's disk use from the engine's ``df()``, or None if unknown.

    The engine reports -1 when it could not measure a volume; that is returned as None.
    """
    name = volume_name(site_uuid)
    with engine_errors("Measuring the data volume"):
        usage = runtime.client.df()
    for volume in usage.get("Volumes") or []:
        if volume.get("Name") == name:
            size = int((volume.get("UsageData") or {}).get("Size", -1))
            return size if size >= 0 else None
    return None


def replace_container(runtime: DockerRuntime, *, spec: ContainerSpec) -> ContainerState:
    """Make the site's container run ``spec.image``, replacing one with another image.

    Idempotent: a container already on ``spec.image`` is kept as it is.
    """
    existing = runtime.find_container(spec.site_uuid)
    if existing is not None:
        if existing.attrs.get("Config", {}).get("Image") == spec.image:
            return runtime._state(existing)
        runtime.remove_container(site_uuid=spec.site_uuid)
    return runtime.ensure_container(spec=spec)


def _create_helper(runtime: DockerRuntime, *, site_uuid: str, image: str, read_only: bool):
    _remove_helper(runtime, site_uuid=site_uuid)
    volume = volume_name(site_uuid)
    with engine_errors("Creating the archive helper container"):
        return runtime.client.containers.create(
            image,
            command=["true"],
            name=helper_name(site_uuid),
            labels=site_labels(site_uuid, deployment=runtime.deployment, role="helper"),
            volumes={volume: {"bind": ARCHIVE_MOUNT, "mode": "ro" if read_only else "rw"}},
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            privileged=False,
        )


def _remove_helper(runtime: DockerRuntime, *, site_uuid: str) -> None:
    with engine_errors("Removing the archive helper container"), contextlib.suppress(NotFound):
        runtime.client.containers.get(helper_name(site_uuid)).remove(force=True)


def archive_volume(runtime: DockerRuntime, *, site_uuid: str, destination: Path, image: str) -> int:
    """Write a tar archive of the site's data volume to ``destination``; return its size.

    The archive is written to a temporary file and renamed into place, so
    ``destination`` exists only when complete. Idempotent: an existing
    ``destination`` is kept. Raises PermanentError if the helper image is missing.
    """
    if destination.exists():
        return destination.stat().st_size
    destination.parent.mkdir(parents=True, exist_ok=True)

    helper = _create_helper(runtime, site_uuid=site_uuid, image=image, read_only=True)
    try:
        handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".partial")
        with os.fdopen(handle, "wb") as archive, engine_errors("Archiving the data volume"):
            stream, _ = helper.get_archive(ARCHIVE_MOUNT)
            for chunk in stream:
                archive.write(chunk)
        os.replace(temporary, destination)
    finally:
        _remove_helper(runtime, site_uuid=site_uuid)
        if "temporary" in locals() and os.path.exists(temporary):
            os.unlink(temporary)
    return destination.stat().st_size


def restore_volume(runtime: DockerRuntime, *, site_uuid: str, archive: Path, image: str) -> None:
    """Replace the data volume's contents with ``archive`` (made by ``archive_volume``).

    The volume is removed and created again empty, so no file of the current
    contents survives; the engine keeps the owners and modes stored in the archive.
    The site's container must already be removed (a volume in use cannot be).
    Idempotent: running it again restores the same contents.
    """
    runtime.remove_volume(site_uuid=site_uuid)
    runtime.ensure_volume(site_uuid=site_uuid)
    helper = _create_helper(runtime, site_uuid=site_uuid, image=image, read_only=False)
    try:
        with archive.open("rb") as data, engine_errors("Restoring the data volume"):
            helper.put_archive("/", data)
    finally:
        _remove_helper(runtime, site_uuid=site_uuid)


def remove_container_by_id(runtime: DockerRuntime, *, container_id: str) -> bool:
    """Remove one container of this deployment by id; return False if it was gone.

    A container of another deployment is never removed, whatever its id.
    """
    with engine_errors("Removing a stray container"):
        try:
            container: Container = runtime.client.containers.get(container_id)
        except NotFound:
            return False
        if container.labels.get(LABEL_DEPLOYMENT) != runtime.deployment:
            log.warning("not removing a container of another deployment", container=container_id)
            return False
        container.remove(force=True)
    log.info(
        "stray container removed",
        container=container_id,
        site=container.labels.get(LABEL_SITE, ""),
    )
    return True
