"""Crash and fault safety against the real engine: killed workers, late and failed
engine answers, concurrent creates.

Engine faults come from ``tests.docker_proxy``, a real proxy on the engine's socket
that holds back or fails chosen requests; nothing of Hostyard's own code is replaced.
"""

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from django.conf import settings
from django.db import connection

from hosting import lifecycle, services
from hosting.models import App, Organization, Site
from provisioning.drivers import registry
from provisioning.engine.runner import Outcome, run_operation
from provisioning.models import Operation, OperationStep
from tests.docker_proxy import DockerProxy
from tests.fixtures.platform import wait_for
from tests.lifecycle_helpers import (
    app_container,
    body,
    run_to_end,
    running_site,
    sign_up,
    site_containers,
    site_volumes,
)

pytestmark = pytest.mark.usefixtures("catalog")

API = r"/v[\d.]+"
APP_CREATE = rf"POST {API}/containers/create\?name=hostyard-[0-9a-f-]{{36}}(?:&|$)"
START = rf"POST {API}/containers/[0-9a-f]+/start"


@pytest.fixture
def docker_proxy() -> Iterator[DockerProxy]:
    # A short directory: Unix socket paths are limited to 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="hy-proxy-", dir="/tmp"))
    upstream = settings.DOCKER_HOST.removeprefix("unix://")
    proxy = DockerProxy(directory / "docker.sock", upstream).start()
    yield proxy
    proxy.stop()
    (directory / "docker.sock").unlink(missing_ok=True)
    directory.rmdir()


@pytest.fixture
def engine_via_proxy(docker_proxy: DockerProxy, settings) -> DockerProxy:
    """Point this process's runtime at the proxy."""
    settings.DOCKER_HOST = docker_proxy.url
    registry.reset()
    yield docker_proxy
    registry.reset()


@pytest.fixture
def proxy_environment(docker_proxy: DockerProxy, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_proxy.url)


@pytest.fixture
def proxied_workers(proxy_environment: None, worker_factory):
    """Start real workers whose engine is reached through the proxy.

    ``worker_factory`` copies the environment when it is set up, so it must come
    after ``proxy_environment`` in this fixture's arguments.
    """
    return worker_factory


# The request each step's kill waits for: the engine has done the work, its answer is
# held back, and the worker dies before recording it. None: the step is slow by
# itself (DEMO_START_DELAY), so it is killed while running.
CREATE_KILLS = {
    "create_volume": rf"POST {API}/volumes/create",
    "create_container": APP_CREATE,
    "start_container": START,
    "wait_healthy": None,
}
UPDATE_KILLS = {
    "stop_for_update": rf"POST {API}/containers/[0-9a-f]+/stop",
    "snapshot_volume": rf"GET {API}/containers/[0-9a-f]+/archive",
    "replace_container": APP_CREATE,
    "start_container": START,
    "wait_healthy": None,
}
TERMINATE_KILLS = {
    "remove_container": rf"DELETE {API}/containers/[0-9a-f]+",
    "purge_volume": rf"DELETE {API}/volumes/hostyard-",
}
# Steps left out: record_version, purge_backups and schedule_purge make no engine
# call to hold, and each is a single idempotent database or file change.


def kill_during(step: str, pattern: str | None, operation: Operation, proxy, start_worker) -> None:
    """Start a worker, SIGKILL it while ``step`` runs, then start another one."""
    held = proxy.hold(pattern) if pattern else None
    first = start_worker()
    wait_for(
        lambda: (
            OperationStep.objects.filter(operation=operation, name=step, status="running").exists()
            and (held is None or held.triggered.is_set())
        ),
        timeout=60,
        message=f"step {step} to run (worker log: {first.log_path})",
    )
    first.kill()
    proxy.clear()
    assert Operation.objects.get(pk=operation.pk).status == "running"
    start_worker()
    wait_for(
        lambda: Operation.objects.get(pk=operation.pk).status in ("succeeded", "failed"),
        timeout=120,
        message="the operation to finish after the restart",
    )


def slow_start() -> None:
    App.objects.filter(slug="demo").update(environment={"DEMO_START_DELAY": "3"})


@pytest.mark.parametrize("step", list(CREATE_KILLS))
def test_worker_killed_during_create(step, engine, docker_proxy, proxied_workers) -> None:
    if CREATE_KILLS[step] is None:
        slow_start()
    organization = Organization.objects.create(name="Riverside", slug="riverside")
    site = sign_up(organization)
    operation = site.operations.get()

    kill_during(step, CREATE_KILLS[step], operation, docker_proxy, proxied_workers)

    operation.refresh_from_db()
    site.refresh_from_db()
    assert operation.status == "succeeded"
    assert OperationStep.objects.get(operation=operation, name=step).attempts == 2
    assert site.status == "running"
    assert len(site_containers(engine, site)) == 1
    assert app_container(engine, site).status == "running"
    assert len(site_volumes(engine, site)) == 1


@pytest.mark.parametrize("step", list(UPDATE_KILLS))
def test_worker_killed_during_update(
    step, engine, docker_proxy, proxied_workers, settings, tmp_path
) -> None:
    settings.HOSTYARD_BACKUP_DIR = tmp_path / "backups"
    if UPDATE_KILLS[step] is None:
        slow_start()
    organization = Organization.objects.create(name="Riverside", slug="riverside")
    site = running_site(organization)
    operation = lifecycle.update_site(site=site, version="1.1")

    kill_during(step, UPDATE_KILLS[step], operation, docker_proxy, proxied_workers)

    operation.refresh_from_db()
    site.refresh_from_db()
    assert operation.status == "succeeded"
    assert site.app_version == "1.1"
    assert len(site_containers(engine, site)) == 1
    assert app_container(engine, site).image.tags == ["hostyard/demo:1.1"]
    assert body(engine, site, "/version") == "1.1"


@pytest.mark.parametrize("step", list(TERMINATE_KILLS))
def test_worker_killed_during_terminate(step, engine, docker_proxy, proxied_workers) -> None:
    organization = Organization.objects.create(name="Riverside", slug="riverside")
    site = running_site(organization)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settings, "HOSTYARD_RETENTION_DAYS", 0)
        operation = services.terminate_site(site=site)

    kill_during(step, TERMINATE_KILLS[step], operation, docker_proxy, proxied_workers)

    operation.refresh_from_db()
    site.refresh_from_db()
    assert operation.status == "succeeded"
    assert site.status == "terminated"
    assert site.purged_at is not None
    assert site_containers(engine, site) == []
    assert site_volumes(engine, site) == []


def test_start_timeout_is_retried_without_conflict(
    engine, engine_via_proxy, organization, settings
) -> None:
    settings.HOSTYARD_DOCKER_TIMEOUT_SECONDS = 2
    registry.reset()
    site = sign_up(organization)
    operation = site.operations.get()
    # The engine starts the container, but its answer arrives after the client gave up.
    engine_via_proxy.hold(START, seconds=4)

    first = run_operation(operation.pk)
    step = OperationStep.objects.get(operation=operation, name="start_container")
    assert first.outcome is Outcome.RETRY
    assert step.error_code == "engine_unreachable"
    assert app_container(engine, site).status == "running"

    assert run_to_end(operation) is Outcome.SUCCEEDED
    operation.refresh_from_db()
    step.refresh_from_db()
    assert step.attempts == 2
    assert step.error_code == ""
    assert operation.error_code == ""
    assert len(site_containers(engine, site)) == 1
    assert app_container(engine, site).status == "running"


@pytest.mark.django_db(transaction=True)
def test_two_sites_created_at_once(engine, catalog) -> None:
    organization = Organization.objects.create(name="Riverside", slug="riverside")
    sites = [sign_up(organization, label=label) for label in ("ada", "bob")]
    barrier = threading.Barrier(len(sites))
    outcomes: dict[str, Outcome] = {}

    def create(site: Site) -> None:
        barrier.wait()
        try:
            outcomes[site.label] = run_to_end(site.operations.get())
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(site,)) for site in sites]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    containers = [app_container(engine, site) for site in sites]
    addresses = {
        c.attrs["NetworkSettings"]["Networks"][settings.HOSTYARD_SITE_NETWORK]["IPAddress"]
        for c in containers
    }
    volumes = {v.name for site in sites for v in site_volumes(engine, site)}
    assert outcomes == {"ada": Outcome.SUCCEEDED, "bob": Outcome.SUCCEEDED}
    assert len({c.name for c in containers}) == 2
    assert len(addresses) == 2
    assert len(volumes) == 2
    assert all(c.status == "running" for c in containers)
    assert all(c.attrs["HostConfig"]["PortBindings"] in ({}, None) for c in containers)


def hold_volume(client: docker.DockerClient, site: Site):
    """Keep the site's volume in use, so the engine answers 409 to its removal."""
    return client.containers.create(
        "hostyard/busybox:1",
        command=["true"],
        labels={
            "hostyard.site": str(site.uuid),
            "hostyard.deployment": settings.HOSTYARD_DEPLOYMENT,
        },
        volumes={site.volume_name: {"bind": "/held", "mode": "ro"}},
        network_mode="none",
    )


@pytest.mark.parametrize("fault", ["proxy_500", "volume_in_use_409"])
def test_terminate_waits_for_volume_removal(
    fault, engine, engine_via_proxy, organization, settings
) -> None:
    settings.HOSTYARD_RETENTION_DAYS = 0
    site = running_site(organization)
    holder = None
    if fault == "proxy_500":
        engine_via_proxy.fail(rf"DELETE {API}/volumes/", status=500, message="disk on fire")
    else:
        holder = hold_volume(engine, site)
    operation = services.terminate_site(site=site)

    first = run_operation(operation.pk)

    operation.refresh_from_db()
    site.refresh_from_db()
    step = operation.steps.get(name="purge_volume")
    assert first.outcome is Outcome.RETRY
    assert site.status == "terminating"
    assert operation.status == "queued"
    assert operation.next_attempt_at is not None
    assert step.status == "pending"
    assert step.error_code == "engine_error"
    assert f"returned HTTP {fault[-3:]}" in step.message
    assert Site.objects.filter(pk=site.pk).exists()

    engine_via_proxy.clear()
    if holder is not None:
        holder.remove(force=True)
    assert run_to_end(operation) is Outcome.SUCCEEDED
    site.refresh_from_db()
    assert site.status == "terminated"
    assert site_containers(engine, site) == []
    assert site_volumes(engine, site) == []
