"""Lifecycle steps: restart, live plan changes, app updates with rollback, retention."""

import dataclasses
from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.utils import timezone

from hosting.models import Backup, DesiredStatus, Site, SiteEvent
from provisioning.drivers import registry
from provisioning.drivers.runtime import docker_lifecycle
from provisioning.drivers.runtime.base import ContainerSpec
from provisioning.engine.steps import SkipStep, StepContext, step
from provisioning.errors import PermanentError
from provisioning.models import Operation
from provisioning.steps.backups import restorable_archive
from provisioning.steps.containers import container_spec

log = structlog.get_logger(__name__)


def spec_for_version(site: Site, version: str) -> ContainerSpec:
    return dataclasses.replace(container_spec(site), image=site.app.image_reference(version))


def _health_timeout(site: Site) -> float:
    return min(site.app.start_timeout_seconds, settings.HOSTYARD_HEALTH_TIMEOUT_SECONDS)


def _start_and_wait(site: Site) -> str:
    """Start the container, wait for health and point the edge route at its address."""
    from provisioning.steps.edge import apply_route

    runtime = registry.runtime()
    runtime.start_container(site_uuid=str(site.uuid))
    upstream = runtime.wait_healthy(
        site_uuid=str(site.uuid),
        port=site.app.internal_port,
        path=site.app.health_path,
        timeout=_health_timeout(site),
    )
    if registry.edge_enabled():
        apply_route(site, upstream)
    return upstream


@step("restart_container")
def restart_container(ctx: StepContext) -> dict[str, Any]:
    state = docker_lifecycle.restart_container(registry.runtime(), site_uuid=ctx.site_uuid)
    return {"state": state.state}


@step("apply_plan_limits")
def apply_plan_limits(ctx: StepContext) -> dict[str, Any]:
    """Set the site's plan limits on its container in place; the container keeps running."""
    plan = ctx.site.plan
    return docker_lifecycle.update_limits(
        registry.runtime(),
        site_uuid=ctx.site_uuid,
        memory_mb=plan.memory_mb,
        cpus=float(plan.cpus),
        pids_limit=plan.pids_limit,
    )


@step("resume_unless_suspended")
def resume_unless_suspended(ctx: StepContext) -> dict[str, Any]:
    """Start the container and wait for health, unless the site should stay stopped."""
    if ctx.site.desired_status != DesiredStatus.RUNNING:
        raise SkipStep("The site is suspended; its container stays stopped.")
    return {"upstream": _start_and_wait(ctx.site)}


@step("schedule_purge")
def schedule_purge(ctx: StepContext) -> dict[str, Any]:
    """Record when a terminated site's kept data becomes due for purging."""
    if ctx.operation.params.get("purge"):
        raise SkipStep("The data was purged at termination.")
    days = int(ctx.operation.params.get("retention_days", settings.HOSTYARD_RETENTION_DAYS))
    purge_after = ctx.operation.created_at + timedelta(days=days)
    Site.objects.filter(pk=ctx.site.pk).update(purge_after=purge_after)
    return {"purge_after": purge_after.isoformat()}


# --- update --------------------------------------------------------------------------


def _roll_back_update(ctx: StepContext) -> dict[str, Any]:
    """Bring back the old version: its image, and the volume as snapshotted, if needed.

    The volume is restored only when the container no longer runs the old image,
    because only then can the new version have written to it.
    """
    site = ctx.site
    site.refresh_from_db()
    old_spec = spec_for_version(site, ctx.operation.params["previous_version"])
    runtime = registry.runtime()
    current = runtime.find_container(ctx.site_uuid)
    current_image = current.attrs.get("Config", {}).get("Image") if current else None

    restored = False
    if current_image != old_spec.image:
        runtime.remove_container(site_uuid=ctx.site_uuid)
        snapshot = Backup.objects.filter(operation_uuid=ctx.operation.uuid).first()
        if snapshot is not None:
            docker_lifecycle.restore_volume(
                runtime,
                site_uuid=ctx.site_uuid,
                archive=restorable_archive(snapshot),
                image=settings.HOSTYARD_HELPER_IMAGE,
            )
            restored = True
        runtime.ensure_container(spec=old_spec)
    upstream = _start_and_wait(site)

    SiteEvent.objects.create(
        site=site,
        kind="update_rolled_back",
        level=SiteEvent.Level.WARNING,
        message=(
            f"Update to {ctx.operation.params['version']} failed; version "
            f"{ctx.operation.params['previous_version']} runs again"
            + (" with its data restored from the snapshot." if restored else ".")
        ),
        data={"operation": str(ctx.operation.uuid), "volume_restored": restored},
    )
    log.warning("update rolled back", volume_restored=restored)
    return {"rolled_back": True, "volume_restored": restored, "upstream": upstream}


@step("check_update_image")
def check_update_image(ctx: StepContext) -> dict[str, Any]:
    """Check the new image exists before any downtime, and record the version to roll back to.

    The version is read when the update starts, not when it was requested, because an
    update queued behind another one must roll back to what that one left running.
    Raises PermanentError naming the image when the engine does not have it.
    """
    site = ctx.site
    site.refresh_from_db()
    version = ctx.operation.params["version"]
    image = site.app.image_reference(version)
    if not docker_lifecycle.image_exists(registry.runtime(), image):
        raise PermanentError(
            f"Image {image} not found on the engine; build or load it, or choose another "
            "version. The site was not touched.",
            code="image_not_found",
        )

    previous = ctx.operation.params.get("previous_version") or site.app_version
    params = {**ctx.operation.params, "previous_version": previous}
    Operation.objects.filter(pk=ctx.operation.pk).update(params=params)
    ctx.operation.params = params
    return {"image": image, "previous_version": previous}


@step("stop_for_update", undo=_roll_back_update)
def stop_for_update(ctx: StepContext) -> dict[str, Any]:
    """Stop the old version so the snapshot reads files no process is writing.

    Its undo rolls the whole update back, because it is the first step.
    """
    return {"stopped": registry.runtime().stop_container(site_uuid=ctx.site_uuid)}


@step("replace_container")
def replace_container(ctx: StepContext) -> dict[str, Any]:
    """Replace the container with one of the requested version; the volume is kept.

    The new image is looked up first, so a missing image fails the step before the
    old container is removed.
    """
    spec = spec_for_version(ctx.site, ctx.operation.params["version"])
    runtime = registry.runtime()
    with docker_lifecycle.engine_errors("Finding the new version's image"):
        runtime.client.images.get(spec.image)
    state = docker_lifecycle.replace_container(runtime, spec=spec)
    Site.objects.filter(pk=ctx.site.pk).update(container_id=state.container_id)
    return {"container_id": state.container_id, "image": spec.image}


@step("record_version")
def record_version(ctx: StepContext) -> dict[str, Any]:
    version = ctx.operation.params["version"]
    Site.objects.filter(pk=ctx.site.pk).update(app_version=version, updated_at=timezone.now())
    return {"app_version": version}
