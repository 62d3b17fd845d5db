"""Helpers shared by the lifecycle, reconciler and fault tests."""

import docker
import requests
from django.conf import settings

from hosting import services
from hosting.models import App, Organization, Plan, Site
from provisioning.drivers.runtime.base import LABEL_SITE
from provisioning.engine.runner import Outcome, run_operation
from provisioning.models import Operation


def sign_up(organization: Organization, *, label: str = "ada", plan: str = "micro") -> Site:
    site, _ = services.sign_up_site(
        organization=organization,
        customer_email=f"{label}@riverside.edu",
        app=App.objects.get(slug="demo"),
        plan=Plan.objects.get(slug=plan),
        label=label,
    )
    return site


def run_to_end(operation: Operation, max_rounds: int = 12) -> Outcome:
    """Run the operation in this process, following retries at once, until it finishes."""
    outcome = Outcome.RETRY
    for _ in range(max_rounds):
        outcome = run_operation(operation.pk).outcome
        if outcome is not Outcome.RETRY:
            break
    return outcome


def running_site(organization: Organization, *, label: str = "ada", plan: str = "micro") -> Site:
    site = sign_up(organization, label=label, plan=plan)
    assert run_to_end(site.operations.get()) is Outcome.SUCCEEDED
    site.refresh_from_db()
    return site


def site_containers(client: docker.DockerClient, site: Site, role: str | None = None) -> list:
    labels = [f"{LABEL_SITE}={site.uuid}"]
    if role:
        labels.append(f"hostyard.role={role}")
    return client.containers.list(all=True, filters={"label": labels})


def site_volumes(client: docker.DockerClient, site: Site) -> list:
    return client.volumes.list(filters={"label": f"{LABEL_SITE}={site.uuid}"})


def app_container(client: docker.DockerClient, site: Site):
    [container] = site_containers(client, site, role="app")
    container.reload()
    return container


def fetch(client: docker.DockerClient, site: Site, path: str) -> requests.Response:
    container = app_container(client, site)
    address = container.attrs["NetworkSettings"]["Networks"][settings.HOSTYARD_SITE_NETWORK]
    return requests.get(f"http://{address['IPAddress']}:8080{path}", timeout=5)


def body(client: docker.DockerClient, site: Site, path: str) -> str:
    """Return a page's body as text; busybox httpd sends no charset, so decode as UTF-8."""
    return fetch(client, site, path).content.decode().strip()


def write_file(client: docker.DockerClient, site: Site, name: str, text: str) -> None:
    """Write a file into the site's served directory from inside its container."""
    container = app_container(client, site)
    result = container.exec_run(["sh", "-c", f"printf %s '{text}' > /data/www/{name}"])
    assert result.exit_code == 0, result.output
