"""Container steps: volume, container, start, health, and their removal."""

from typing import Any

from django.conf import settings

from hosting.models import Site
from provisioning.drivers import registry
from provisioning.drivers.runtime.base import ContainerSpec
from provisioning.engine.steps import StepContext, step


def container_spec(site: Site) -> ContainerSpec:
    app, plan = site.app, site.plan
    # Catalog values may name the site's hostname as {hostname}, e.g. Ghost's url.
    environment = {
        str(key): str(value).replace("{hostname}", site.hostname)
        for key, value in app.environment.items()
    }
    environment.setdefault("SITE_HOSTNAME", site.hostname)
    return ContainerSpec(
        site_uuid=str(site.uuid),
        image=site.image_reference,
        internal_port=app.internal_port,
        data_path=app.data_path,
        memory_mb=plan.memory_mb,
        cpus=float(plan.cpus),
        pids_limit=plan.pids_limit,
        capabilities=list(app.capabilities),
        environment=environment,
    )


def _remove_volume(ctx: StepContext) -> dict[str, Any]:
    removed = registry.runtime().remove_volume(site_uuid=ctx.site_uuid)
    return {"removed": removed}


def _remove_container(ctx: StepContext) -> dict[str, Any]:
    removed = registry.runtime().remove_container(site_uuid=ctx.site_uuid)
    Site.objects.filter(pk=ctx.site.pk).update(container_id="")
    return {"removed": removed}


@step("create_volume", undo=_remove_volume)
def create_volume(ctx: StepContext) -> dict[str, Any]:
    name = registry.runtime().ensure_volume(site_uuid=ctx.site_uuid)
    Site.objects.filter(pk=ctx.site.pk).update(volume_name=name)
    return {"volume": name}


@step("create_container", undo=_remove_container)
def create_container(ctx: StepContext) -> dict[str, Any]:
    state = registry.runtime().ensure_container(spec=container_spec(ctx.site))
    Site.objects.filter(pk=ctx.site.pk).update(container_id=state.container_id)
    return {"container_id": state.container_id, "name": state.name}


@step("start_container")
def start_container(ctx: StepContext) -> dict[str, Any]:
    state = registry.runtime().start_container(site_uuid=ctx.site_uuid)
    return {"state": state.state}


@step("wait_healthy")
def wait_healthy(ctx: StepContext) -> dict[str, Any]:
    app = ctx.site.app
    timeout = min(app.start_timeout_seconds, settings.HOSTYARD_HEALTH_TIMEOUT_SECONDS)
    upstream = registry.runtime().wait_healthy(
        site_uuid=ctx.site_uuid, port=app.internal_port, path=app.health_path, timeout=timeout
    )
    return {"upstream": upstream}


@step("stop_container")
def stop_container(ctx: StepContext) -> dict[str, Any]:
    return {"stopped": registry.runtime().stop_container(site_uuid=ctx.site_uuid)}


step("remove_container")(_remove_container)
step("remove_volume")(_remove_volume)
