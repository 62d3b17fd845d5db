"""Real Ghost, WordPress and Etherpad sites provisioned through the catalog.

The images are built locally, because no registry is reachable, and are named
``realapps/*``. Each case is skipped, saying so, when its image is not on the engine. The catalog
entries name the apps' public images, so each case points its entry at the local
build, as a deployment with a mirror would, and adjusts what that build does
differently (health path, data path).
"""

from dataclasses import dataclass, field

import docker
import pytest
import requests

from hosting import services
from hosting.catalog import load_catalog
from hosting.models import App, Organization, Plan
from provisioning.drivers.runtime.base import LABEL_SITE
from provisioning.engine.runner import Outcome
from tests.lifecycle_helpers import app_container, run_to_end

pytestmark = [pytest.mark.real_apps, pytest.mark.django_db]


@dataclass(frozen=True)
class RealApp:
    slug: str
    image: str
    health_path: str
    data_path: str
    changes: dict[str, object] = field(default_factory=dict)


REAL_APPS = [
    RealApp("ghost", "realapps/ghost:5", "/ghost/api/admin/site/", "/var/lib/ghost/content"),
    # The local WordPress build runs MariaDB in the same container. Its database is
    # the data that matters, so the site's volume is mounted there.
    RealApp("wordpress", "realapps/wordpress:6.1", "/healthz", "/var/lib/mysql"),
    RealApp(
        "etherpad",
        "realapps/etherpad:1.8.14",
        "/api",
        "/opt/etherpad/var",
        {"capabilities": ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER"]},
    ),
]


def has_image(client: docker.DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.mark.parametrize("real_app", REAL_APPS, ids=[app.slug for app in REAL_APPS])
def test_real_app_runs_through_catalog(
    real_app: RealApp, engine: docker.DockerClient, organization: Organization, settings
) -> None:
    if not has_image(engine, real_app.image):
        pytest.skip(f"{real_app.image} is not on the engine; build the realapps images first")
    settings.HOSTYARD_HEALTH_TIMEOUT_SECONDS = 300
    settings.HOSTYARD_RETENTION_DAYS = 0
    load_catalog(image_overrides={real_app.slug: real_app.image})
    App.objects.filter(slug=real_app.slug).update(
        health_path=real_app.health_path, data_path=real_app.data_path, **real_app.changes
    )

    site, create = services.sign_up_site(
        organization=organization,
        customer_email=f"{real_app.slug}@riverside.edu",
        app=App.objects.get(slug=real_app.slug),
        plan=Plan.objects.get(slug="standard"),
        label=f"real-{real_app.slug}",
    )
    outcome = run_to_end(create)
    failed = list(create.steps.exclude(status="succeeded").values("name", "message", "detail"))
    assert outcome is Outcome.SUCCEEDED, failed

    container = app_container(engine, site)
    address = container.attrs["NetworkSettings"]["Networks"][settings.HOSTYARD_SITE_NETWORK]
    port = App.objects.get(slug=real_app.slug).internal_port
    # Sent as the edge sends it: the site's Host, HTTPS already terminated. Redirects are
    # not followed, because they name the site's hostname, which only the platform's DNS
    # resolves.
    page = requests.get(
        f"http://{address['IPAddress']}:{port}{real_app.health_path}",
        headers={"Host": site.hostname, "X-Forwarded-Proto": "https"},
        allow_redirects=False,
        timeout=10,
    )
    assert page.status_code == 200
    assert container.attrs["HostConfig"]["CapDrop"] == ["ALL"]

    assert run_to_end(services.terminate_site(site=site)) is Outcome.SUCCEEDED
    labelled = {"label": f"{LABEL_SITE}={site.uuid}"}
    assert engine.containers.list(all=True, filters=labelled) == []
    assert engine.volumes.list(filters=labelled) == []
