"""The operation engine against the real Docker Engine, run in-process (no broker)."""

import docker
import pytest
import requests
from django.conf import settings

from hosting import services
from hosting.models import App, Organization, Plan, Site
from provisioning.drivers.runtime.base import LABEL_SITE
from provisioning.engine.runner import Outcome, run_operation
from provisioning.models import Operation, OperationStep
from tests.lifecycle_helpers import run_to_end

pytestmark = pytest.mark.usefixtures("catalog")


def sign_up(organization: Organization, *, label: str = "ada", app: str = "demo") -> Site:
    site, _ = services.sign_up_site(
        organization=organization,
        customer_email=f"{label}@riverside.edu",
        app=App.objects.get(slug=app),
        plan=Plan.objects.get(slug="micro"),
        label=label,
    )
    return site


def site_containers(client: docker.DockerClient, site: Site) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_SITE}={site.uuid}"})


def site_volumes(client: docker.DockerClient, site: Site) -> list:
    return client.volumes.list(filters={"label": f"{LABEL_SITE}={site.uuid}"})


def container_address(container) -> str:
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"]
    return networks[settings.HOSTYARD_SITE_NETWORK]["IPAddress"]


def test_create_runs_container_answering_http(engine, organization: Organization) -> None:
    site = sign_up(organization)

    outcome = run_to_end(site.operations.get())

    site.refresh_from_db()
    assert outcome is Outcome.SUCCEEDED
    assert site.status == "running"
    [container] = site_containers(engine, site)
    assert container.status == "running"
    page = requests.get(f"http://{container_address(container)}:8080/", timeout=5)
    assert page.status_code == 200
    assert "Hostyard demo site" in page.text
    assert site.hostname in page.text


def test_container_carries_plan_limits(engine, organization: Organization) -> None:
    site = sign_up(organization)
    run_to_end(site.operations.get())

    [container] = site_containers(engine, site)
    host_config = container.attrs["HostConfig"]

    assert host_config["Memory"] == site.plan.memory_mb * 1024 * 1024
    assert host_config["NanoCpus"] == int(float(site.plan.cpus) * 1_000_000_000)
    assert host_config["PidsLimit"] == site.plan.pids_limit
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert host_config["Privileged"] is False
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert container.labels["hostyard.deployment"] == settings.HOSTYARD_DEPLOYMENT
    mounts = {mount["Destination"]: mount for mount in container.attrs["Mounts"]}
    assert mounts["/data"]["Name"] == site.volume_name or mounts["/data"]["Name"].endswith("-data")


def test_create_steps_run_twice_leave_one_container(engine, organization: Organization) -> None:
    site = sign_up(organization)
    operation = site.operations.get()
    run_to_end(operation)

    # Replay every step as if the worker had crashed before recording them.
    OperationStep.objects.filter(operation=operation).update(status="pending")
    Operation.objects.filter(pk=operation.pk).update(status="queued")
    outcome = run_to_end(operation)

    assert outcome is Outcome.SUCCEEDED
    assert len(site_containers(engine, site)) == 1
    assert len(site_volumes(engine, site)) == 1


def test_terminate_removes_container_and_volume(engine, organization, settings) -> None:
    # With no retention period, terminating purges the volume at once.
    settings.HOSTYARD_RETENTION_DAYS = 0
    site = sign_up(organization)
    run_to_end(site.operations.get())

    terminate = services.terminate_site(site=site)
    outcome = run_to_end(terminate)

    site.refresh_from_db()
    assert outcome is Outcome.SUCCEEDED
    assert site.status == "terminated"
    assert site.terminated_at is not None
    assert site_containers(engine, site) == []
    assert site_volumes(engine, site) == []


def test_missing_image_fails_once_and_cleans_up(engine, organization: Organization) -> None:
    App.objects.filter(slug="demo").update(image="hostyard/nosuchimage")
    site = sign_up(organization)
    operation = site.operations.get()

    outcome = run_to_end(operation)

    operation.refresh_from_db()
    site.refresh_from_db()
    failed = operation.steps.get(status="failed")
    assert outcome is Outcome.FAILED
    assert operation.status == "failed"
    assert operation.error_code == "image_not_found"
    assert failed.name == "create_container"
    assert failed.attempts == 1
    assert "image not found" in failed.message
    assert site.status == "failed"
    assert "image not found" in site.status_reason
    assert site_containers(engine, site) == []
    assert site_volumes(engine, site) == []


def test_crashing_app_fails_with_its_logs(engine, organization: Organization) -> None:
    App.objects.filter(slug="demo").update(default_version="broken")
    site = sign_up(organization)
    operation = site.operations.get()

    outcome = run_to_end(operation)

    failed = operation.steps.get(status="failed")
    assert outcome is Outcome.FAILED
    assert failed.name == "wait_healthy"
    assert failed.error_code == "container_exited"
    assert "migration failed" in failed.detail
    assert site_containers(engine, site) == []


def test_second_run_of_finished_operation_changes_nothing(engine, organization) -> None:
    site = sign_up(organization)
    operation = site.operations.get()
    run_to_end(operation)

    assert run_operation(operation.pk).outcome is Outcome.NOT_CLAIMED
    assert operation.steps.filter(attempts=1).count() == operation.steps.count()


def test_operations_of_one_site_run_in_order(engine, organization: Organization) -> None:
    site = sign_up(organization)
    create = site.operations.get()
    Operation.objects.filter(pk=create.pk).update(started_at="2026-01-01T00:00:00Z")
    terminate = services.terminate_site(site=site)

    assert run_operation(terminate.pk).outcome is Outcome.BLOCKED
    assert run_to_end(create) is Outcome.SUCCEEDED
    assert run_to_end(terminate) is Outcome.SUCCEEDED
    site.refresh_from_db()
    assert site.status == "terminated"


def test_unhealthy_app_times_out_readably(engine, organization, settings) -> None:
    settings.HOSTYARD_HEALTH_TIMEOUT_SECONDS = 2
    App.objects.filter(slug="demo").update(health_path="/no-such-page")
    site = sign_up(organization)
    operation = site.operations.get()

    outcome = run_to_end(operation)

    failed = operation.steps.get(status="failed")
    assert outcome is Outcome.FAILED
    assert failed.name == "wait_healthy"
    assert failed.error_code == "health_check_timeout"
    assert "did not respond to its health check /no-such-page within 2 s" in failed.message
    assert "HTTP 404" in failed.message
    assert site_containers(engine, site) == []
