"""Engine restarts, on a private dockerd that these tests stop and start by its PID."""

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from devstack.images import ensure_images
from hosting import lifecycle
from provisioning.drivers import registry
from provisioning.engine.runner import Outcome, run_operation
from provisioning.reconciler import reconcile
from tests.docker_proxy import DockerProxy
from tests.fixtures.platform import wait_for
from tests.lifecycle_helpers import (
    app_container,
    run_to_end,
    running_site,
    sign_up,
    site_containers,
)
from tests.private_dockerd import PrivateDockerd
from tests.test_faults import APP_CREATE

pytestmark = pytest.mark.usefixtures("catalog")


@pytest.fixture(scope="module")
def private_dockerd() -> Iterator[PrivateDockerd]:
    daemon = PrivateDockerd()
    try:
        daemon.start()
        ensure_images(daemon.client())
        daemon.remove_stale_bridges()
        daemon.create_network(
            django_settings.HOSTYARD_SITE_NETWORK,
            internal=django_settings.HOSTYARD_SITE_NETWORK_INTERNAL,
        )
        yield daemon
    finally:
        daemon.remove()


@pytest.fixture
def private_engine(private_dockerd: PrivateDockerd, settings) -> Iterator:
    """Point the runtime at the private daemon, started if a test left it stopped."""
    if private_dockerd.process is None or private_dockerd.process.poll() is not None:
        private_dockerd.start()
    settings.DOCKER_HOST = private_dockerd.url
    registry.reset()
    yield private_dockerd.client()
    registry.reset()


def run_in_thread(operation_id: int, outcomes: list[Outcome]) -> None:
    try:
        outcomes.append(run_operation(operation_id).outcome)
    finally:
        connection.close()


# Transactional: the operation runs in a second thread with its own connection.
@pytest.mark.django_db(transaction=True)
def test_create_survives_engine_restart(
    private_dockerd, private_engine, organization, settings
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="hy-proxy-", dir="/tmp"))
    proxy = DockerProxy(directory / "docker.sock", str(private_dockerd.socket)).start()
    try:
        settings.DOCKER_HOST = proxy.url
        # A request cut off by the daemon's stop fails within the client timeout; keep it
        # well under the thread join below.
        settings.HOSTYARD_DOCKER_TIMEOUT_SECONDS = 5
        registry.reset()
        site = sign_up(organization)
        operation = site.operations.get()
        held = proxy.hold(APP_CREATE)
        outcomes: list[Outcome] = []
        runner = threading.Thread(target=run_in_thread, args=(operation.pk, outcomes))
        runner.start()
        wait_for(held.triggered.is_set, timeout=30, message="the container create request")

        private_dockerd.stop()
        proxy.clear()
        runner.join(timeout=60)
        operation.refresh_from_db()
        waiting = operation.steps.filter(status="pending", error_code="engine_unreachable")
        assert outcomes == [Outcome.RETRY]
        assert operation.status == "queued"
        assert waiting.exists()

        private_dockerd.start()
        assert run_to_end(operation) is Outcome.SUCCEEDED
    finally:
        proxy.stop()
        shutil.rmtree(directory, ignore_errors=True)

    site.refresh_from_db()
    assert site.status == "running"
    assert len(site_containers(private_engine, site)) == 1
    assert app_container(private_engine, site).status == "running"


def test_suspended_site_stays_stopped_after_restart(
    private_dockerd, private_engine, organization
) -> None:
    active = running_site(organization, label="ada")
    unpaid = running_site(organization, label="bob")
    assert run_to_end(lifecycle.suspend_site(site=unpaid, reason="billing")) is Outcome.SUCCEEDED

    private_dockerd.stop()
    private_dockerd.start()
    registry.reset()

    wait_for(
        lambda: app_container(private_engine, active).status == "running",
        message="the active site's container to come back",
    )
    report = reconcile()
    for operation in active.operations.filter(requested_by="reconciler"):
        assert run_to_end(operation) is Outcome.SUCCEEDED

    unpaid.refresh_from_db()
    assert report.opened == []
    assert unpaid.status == "suspended"
    assert app_container(private_engine, unpaid).status == "exited"
    assert app_container(private_engine, active).status == "running"
    assert len(site_containers(private_engine, active)) == 1
    assert len(site_containers(private_engine, unpaid)) == 1
