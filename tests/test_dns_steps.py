"""The publish_dns and remove_dns steps against the session's real Knot server."""

from collections.abc import Iterator

import pytest

from devstack.knot import KnotServer
from hosting import services
from hosting.models import App, Organization, Plan, Site
from provisioning.drivers import registry
from provisioning.engine.steps import SkipStep, StepContext, get_step
from provisioning.models import OperationStep
from tests.fixtures.dns import resolve_records, set_records

pytestmark = pytest.mark.usefixtures("catalog")


@pytest.fixture
def dns_settings(settings, knot_server: KnotServer) -> Iterator[None]:
    """Point the DNS driver at the session's Knot; the platform zone is one of its zones."""
    settings.HOSTYARD_DNS_DRIVER = "rfc2136"
    settings.HOSTYARD_RFC2136_SERVER = knot_server.server
    settings.HOSTYARD_RFC2136_ZONE = "sites.hostyard.test"
    settings.HOSTYARD_RFC2136_TSIG_NAME = knot_server.tsig_name
    settings.HOSTYARD_RFC2136_TSIG_SECRET = knot_server.tsig_secret
    settings.HOSTYARD_RFC2136_TSIG_ALGORITHM = knot_server.tsig_algorithm
    settings.HOSTYARD_PLATFORM_DOMAIN = "sites.hostyard.test"
    settings.HOSTYARD_PUBLIC_IPV4 = "127.0.0.1"
    settings.HOSTYARD_PUBLIC_IPV6 = ""
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def site(organization: Organization, unique_label: str) -> Site:
    site, _ = services.sign_up_site(
        organization=organization,
        customer_email=f"{unique_label}@riverside.edu",
        app=App.objects.get(slug="demo"),
        plan=Plan.objects.get(slug="micro"),
        label=unique_label,
    )
    return site


def run_step(site: Site, name: str) -> dict:
    """Run one step of the site's create operation in this process, as the runner would."""
    operation = site.operations.get()
    step = operation.steps.filter(name=name).first() or OperationStep(
        operation=operation, position=99, name=name
    )
    ctx = StepContext(operation=operation, step=step, site=site)
    return get_step(name).run(ctx) or {}


@pytest.mark.usefixtures("dns_settings")
def test_publish_dns_creates_a_record(site: Site, knot_server: KnotServer) -> None:
    result = run_step(site, "publish_dns")

    assert resolve_records(knot_server, site.hostname, "A") == ["127.0.0.1"]
    assert resolve_records(knot_server, site.hostname, "AAAA") == []
    assert result["records"] == [{"name": site.hostname, "type": "A", "value": "127.0.0.1"}]


@pytest.mark.usefixtures("dns_settings")
def test_publish_dns_twice_leaves_one_record(site: Site, knot_server: KnotServer) -> None:
    run_step(site, "publish_dns")
    # A retry after a crash runs the whole step again.
    run_step(site, "publish_dns")

    assert resolve_records(knot_server, site.hostname, "A") == ["127.0.0.1"]


@pytest.mark.usefixtures("dns_settings")
def test_publish_dns_replaces_changed_address(
    settings, site: Site, knot_server: KnotServer
) -> None:
    run_step(site, "publish_dns")
    settings.HOSTYARD_PUBLIC_IPV4 = "127.0.0.2"

    run_step(site, "publish_dns")

    assert resolve_records(knot_server, site.hostname, "A") == ["127.0.0.2"]


@pytest.mark.usefixtures("dns_settings")
def test_publish_dns_adds_aaaa_with_ipv6(settings, site: Site, knot_server: KnotServer) -> None:
    settings.HOSTYARD_PUBLIC_IPV6 = "::1"

    run_step(site, "publish_dns")

    assert resolve_records(knot_server, site.hostname, "AAAA") == ["::1"]
    assert resolve_records(knot_server, site.hostname, "A") == ["127.0.0.1"]


@pytest.mark.usefixtures("dns_settings")
def test_remove_dns_deletes_records(settings, site: Site, knot_server: KnotServer) -> None:
    settings.HOSTYARD_PUBLIC_IPV6 = "::1"
    run_step(site, "publish_dns")

    result = run_step(site, "remove_dns")
    again = run_step(site, "remove_dns")

    assert resolve_records(knot_server, site.hostname, "A") == []
    assert resolve_records(knot_server, site.hostname, "AAAA") == []
    assert result["removed"] == {"A": True, "AAAA": True}
    assert again["removed"] == {"A": False, "AAAA": False}


@pytest.mark.usefixtures("dns_settings")
def test_remove_dns_keeps_unmanaged_record(site: Site, knot_server: KnotServer) -> None:
    # A record written by hand, without Hostyard's marker, is not Hostyard's to delete.
    set_records(knot_server, site.hostname, "A", ["127.0.0.9"])

    run_step(site, "remove_dns")

    assert resolve_records(knot_server, site.hostname, "A") == ["127.0.0.9"]
    set_records(knot_server, site.hostname, "A", [])


def test_publish_dns_skipped_without_driver(settings, site: Site) -> None:
    settings.HOSTYARD_DNS_DRIVER = "none"
    registry.reset()

    with pytest.raises(SkipStep, match="HOSTYARD_DNS_DRIVER=none"):
        run_step(site, "publish_dns")
    with pytest.raises(SkipStep):
        run_step(site, "remove_dns")


def test_create_and_terminate_list_dns_steps() -> None:
    from provisioning.engine.kinds import KINDS

    create = KINDS["create"].steps
    assert create.index("wait_healthy") < create.index("publish_dns")
    assert create.index("publish_dns") < create.index("issue_certificate")
    assert "remove_dns" in KINDS["terminate"].steps
