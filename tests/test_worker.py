"""Signups carried out by a real Celery worker process on Redis, PostgreSQL and dockerd."""

import docker
import requests
from django.conf import settings
from rest_framework.test import APIClient

from hosting.models import App, Organization
from provisioning.drivers.runtime.base import LABEL_SITE
from provisioning.models import Operation, OperationStep
from tests.fixtures.platform import client_for, wait_for

SIGNUP = {"customer_email": "ada@riverside.edu", "app": "demo", "plan": "micro", "label": "ada"}


def operation_status(operation_id: str) -> str:
    return Operation.objects.get(uuid=operation_id).status


def site_containers(client: docker.DockerClient, site_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_SITE}={site_id}"})


def make_client(catalog: None) -> APIClient:
    organization = Organization.objects.create(name="Riverside", slug="riverside")
    return client_for(organization)


def test_signup_to_running_and_terminate(catalog, engine, worker_factory) -> None:
    api = make_client(catalog)
    worker_factory()

    created = api.post("/api/v1/sites", SIGNUP, format="json").json()
    wait_for(
        lambda: operation_status(created["operation"]["id"]) == "succeeded",
        message="the create operation",
    )

    site = api.get(f"/api/v1/sites/{created['id']}").json()
    [container] = site_containers(engine, created["id"])
    address = container.attrs["NetworkSettings"]["Networks"][settings.HOSTYARD_SITE_NETWORK]
    page = requests.get(f"http://{address['IPAddress']}:8080/", timeout=5)
    assert site["status"] == "running"
    assert page.status_code == 200

    terminated = api.delete(f"/api/v1/sites/{created['id']}").json()
    wait_for(
        lambda: operation_status(terminated["operation"]["id"]) == "succeeded",
        message="the terminate operation",
    )
    assert api.get(f"/api/v1/sites/{created['id']}").json()["status"] == "terminated"
    assert site_containers(engine, created["id"]) == []


def test_killed_worker_operation_completes(catalog, engine, worker_factory) -> None:
    App.objects.filter(slug="demo").update(environment={"DEMO_START_DELAY": "3"})
    api = make_client(catalog)
    first = worker_factory()
    created = api.post("/api/v1/sites", SIGNUP, format="json").json()
    operation = Operation.objects.get(uuid=created["operation"]["id"])

    wait_for(
        lambda: OperationStep.objects.filter(
            operation=operation, name="wait_healthy", status="running"
        ).exists(),
        message="the wait_healthy step to start",
    )
    first.kill()
    assert operation_status(created["operation"]["id"]) == "running"

    second = worker_factory()
    wait_for(
        lambda: operation_status(created["operation"]["id"]) in ("succeeded", "failed"),
        message="the operation to finish after the restart",
    )

    steps = list(operation.steps.values_list("name", "status", "attempts", "message"))
    assert operation_status(created["operation"]["id"]) == "succeeded", (steps, second.log_text())

    healthy = OperationStep.objects.get(operation=operation, name="wait_healthy")
    assert healthy.attempts == 2
    assert len(site_containers(engine, created["id"])) == 1
    assert api.get(f"/api/v1/sites/{created['id']}").json()["status"] == "running"
