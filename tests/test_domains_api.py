"""Custom domains: the API, name normalization, and the DNS check against the real Knot.

The customer's DNS is the ``example.org`` / ``example.com`` zones of the session's
Knot server; records are set with dnspython as a customer's DNS host would. No
worker runs: tests call the worker's services directly.
"""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from devstack.knot import KnotServer
from hosting import domains
from hosting.models import Domain, DomainStatus, Site
from provisioning.drivers import registry
from tests.fixtures.dns import set_records


@pytest.fixture(autouse=True)
def check_settings(settings, knot_server: KnotServer) -> Iterator[None]:
    """Check domains against the session's Knot; the platform's address is 127.0.0.1."""
    settings.HOSTYARD_DOMAIN_CHECK_RESOLVERS = [knot_server.server]
    settings.HOSTYARD_PLATFORM_DOMAIN = "sites.hostyard.test"
    settings.HOSTYARD_PUBLIC_IPV4 = "127.0.0.1"
    settings.HOSTYARD_PUBLIC_IPV6 = ""
    settings.HOSTYARD_EDGE_DRIVER = "none"
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def records(knot_server: KnotServer) -> Iterator:
    """Set customer records in Knot; every record set here is deleted afterwards."""
    written: list[tuple[str, str]] = []

    def write(name: str, rdtype: str, values: list[str]) -> None:
        set_records(knot_server, name, rdtype, values)
        written.append((name, rdtype))

    yield write
    for name, rdtype in written:
        set_records(knot_server, name, rdtype, [])


def create_site(client: APIClient, label: str) -> dict:
    body = {"customer_email": f"{label}@riverside.edu", "app": "demo", "plan": "micro"}
    response = client.post("/api/v1/sites", {**body, "label": label}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def add(client: APIClient, site: dict, name: str):
    return client.post(f"/api/v1/sites/{site['id']}/domains", {"domain": name}, format="json")


def check(name: str) -> Domain:
    domain = Domain.objects.get(name=name)
    domains.check_domain_now(domain.pk)
    domain.refresh_from_db()
    return domain


# --- input ----------------------------------------------------------------------------


def test_mixed_case_name_stored_normalized(api: APIClient, other_api: APIClient) -> None:
    site = create_site(api, "blogsite")
    other = create_site(other_api, "othersite")

    response = add(api, site, "Blog.Example.ORG.")
    duplicate = add(other_api, other, "blog.example.org")

    assert response.status_code == 202
    assert response.json()["domain"] == "blog.example.org"
    assert response.json()["status"] == "pending"
    assert list(Domain.objects.values_list("name", flat=True)) == ["blog.example.org"]
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "domain_taken"
    assert "blog.example.org" in duplicate.json()["error"]["message"]


def test_normalized_name_sent_to_dns_check(api: APIClient, records) -> None:
    site = create_site(api, "blogcheck")
    records("blog.example.org", "A", ["127.0.0.1"])
    add(api, site, "Blog.Example.ORG.")

    domain = check("blog.example.org")

    assert domain.status == DomainStatus.VERIFIED
    assert domain.status_reason == "blog.example.org resolves to 127.0.0.1."
    assert domain.found["a"] == ["127.0.0.1"]


def test_unicode_name_stored_as_a_label(api: APIClient, other_api: APIClient) -> None:
    site = create_site(api, "bookshop")
    other = create_site(other_api, "bookshop2")

    response = add(api, site, "bücher.example")
    duplicate = add(other_api, other, "xn--bcher-kva.example")

    assert response.status_code == 202
    assert response.json()["domain"] == "xn--bcher-kva.example"
    assert response.json()["unicode"] == "bücher.example"
    assert Domain.objects.get().name == "xn--bcher-kva.example"
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "domain_taken"


def test_invalid_a_label_rejected(api: APIClient) -> None:
    site = create_site(api, "badlabel")

    response = add(api, site, "xn--zz.example")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "domain_invalid_a_label"
    assert "xn--zz" in error["fields"]["domain"][0]
    assert not Domain.objects.exists()


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "invalid"),
        ("*.example.org", "domain_wildcard"),
        ("203.0.113.9", "domain_ip_address"),
        ("localhost", "domain_single_label"),
        ("a..example.org", "domain_invalid"),
        ("shop.sites.hostyard.test", "domain_platform_zone"),
        ("sites.hostyard.test", "domain_platform_zone"),
    ],
)
def test_invalid_names_rejected(api: APIClient, name: str, code: str) -> None:
    site = create_site(api, "rejects")

    response = add(api, site, name)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert "domain" in response.json()["error"]["fields"]
    assert not Domain.objects.exists()


def test_same_site_adding_twice_answers_200(api: APIClient) -> None:
    site = create_site(api, "twice")

    first = add(api, site, "twice.example.org")
    second = add(api, site, "TWICE.example.org")

    assert first.status_code == 202
    assert second.status_code == 200
    assert Domain.objects.count() == 1


def test_other_organization_site_is_404(api: APIClient, other_api: APIClient) -> None:
    site = create_site(api, "private")
    add(api, site, "private.example.org")

    listing = other_api.get(f"/api/v1/sites/{site['id']}/domains")
    adding = add(other_api, site, "grab.example.org")
    deleting = other_api.delete(f"/api/v1/sites/{site['id']}/domains/private.example.org")

    assert listing.status_code == 404
    assert adding.status_code == 404
    assert deleting.status_code == 404
    assert Domain.objects.get().status == DomainStatus.PENDING


# --- checks ---------------------------------------------------------------------------


def test_apex_verified_by_a_record(api: APIClient, records) -> None:
    site = create_site(api, "apexsite")
    records("example.org", "A", ["127.0.0.1"])
    add(api, site, "example.org")

    domain = check("example.org")

    assert domain.status == DomainStatus.VERIFIED
    assert domain.check_attempts == 1
    assert domain.verified_at is not None


def test_www_verified_through_cname_chain(api: APIClient, records) -> None:
    site = create_site(api, "wwwsite")
    # www -> an alias in the customer's zone -> the site's platform hostname.
    records("www.example.com", "CNAME", ["alias.example.com."])
    records("alias.example.com", "CNAME", [f"{site['hostname']}."])
    add(api, site, "www.example.com")

    domain = check("www.example.com")

    assert domain.status == DomainStatus.VERIFIED
    assert domain.found["cname"] == ["alias.example.com", site["hostname"]]
    assert "through CNAME" in domain.status_reason


def test_apex_pointing_elsewhere_stays_pending(api: APIClient, records) -> None:
    site = create_site(api, "elsewhere")
    records("example.org", "A", ["203.0.113.9"])
    add(api, site, "example.org")

    domain = check("example.org")
    listing = api.get(f"/api/v1/sites/{site['id']}/domains").json()

    assert domain.status == DomainStatus.PENDING
    assert "resolves to 203.0.113.9" in domain.status_reason
    assert "A record is 203.0.113.9, expected 127.0.0.1" in domain.status_reason
    assert domain.next_check_at > timezone.now()
    assert listing[0]["status"] == "pending"
    assert listing[0]["reason"] == domain.status_reason
    assert listing[0]["found"]["a"] == ["203.0.113.9"]


def test_recheck_backs_off(api: APIClient, records) -> None:
    site = create_site(api, "backoff")
    records("late.example.org", "A", ["203.0.113.9"])
    add(api, site, "late.example.org")
    first = check("late.example.org")
    first_gap = first.next_check_at - first.checked_at

    Domain.objects.filter(pk=first.pk).update(next_check_at=timezone.now())
    second = check("late.example.org")
    second_gap = second.next_check_at - second.checked_at

    assert second.check_attempts == 2
    assert second_gap > first_gap


def test_recheck_not_before_due(api: APIClient, records) -> None:
    site = create_site(api, "notdue")
    records("notdue.example.org", "A", ["203.0.113.9"])
    add(api, site, "notdue.example.org")
    check("notdue.example.org")

    again = check("notdue.example.org")

    assert again.check_attempts == 1


def test_pending_fails_after_window(api: APIClient, records) -> None:
    site = create_site(api, "window")
    records("window.example.org", "A", ["203.0.113.9"])
    add(api, site, "window.example.org")
    Domain.objects.update(check_deadline=timezone.now() - timedelta(seconds=1))

    domain = check("window.example.org")

    assert domain.status == DomainStatus.FAILED
    assert domain.status_reason.startswith("Not pointed at the platform within 72 hours")
    assert domain.next_check_at is None


def test_pointed_later_becomes_verified(api: APIClient, records) -> None:
    site = create_site(api, "laterok")
    records("later.example.org", "A", ["203.0.113.9"])
    add(api, site, "later.example.org")
    check("later.example.org")

    records("later.example.org", "A", ["127.0.0.1"])
    Domain.objects.update(next_check_at=timezone.now())
    domain = check("later.example.org")

    assert domain.status == DomainStatus.VERIFIED


def test_cname_to_other_site_is_conflict(api: APIClient, records) -> None:
    site = create_site(api, "mine")
    other = create_site(api, "theirs")
    records("shop.example.com", "CNAME", [f"{other['hostname']}."])
    add(api, site, "shop.example.com")

    domain = check("shop.example.com")

    assert domain.status == DomainStatus.CONFLICT
    assert other["hostname"] in domain.status_reason
    assert site["hostname"] in domain.status_reason


def test_caa_forbidding_ca_keeps_pending(api: APIClient, records) -> None:
    site = create_site(api, "caasite")
    records("caa.example.org", "A", ["127.0.0.1"])
    records("caa.example.org", "CAA", ['0 issue "ca.invalid"'])
    add(api, site, "caa.example.org")

    domain = check("caa.example.org")

    assert domain.status == DomainStatus.PENDING
    assert "CAA record at caa.example.org forbids" in domain.status_reason


def test_missing_name_keeps_pending(api: APIClient) -> None:
    site = create_site(api, "nxsite")
    add(api, site, "nothing-here.example.org")

    domain = check("nothing-here.example.org")

    assert domain.status == DomainStatus.PENDING
    assert "does not exist in DNS (NXDOMAIN)" in domain.status_reason


def test_activation_without_edge_marks_active(api: APIClient, records) -> None:
    create_site(api, "noedge")
    site = Site.objects.get(label="noedge")
    Site.objects.filter(pk=site.pk).update(status="running")
    records("noedge.example.org", "A", ["127.0.0.1"])
    add(api, {"id": site.uuid}, "noedge.example.org")
    check("noedge.example.org")

    domain = domains.activate_domain(Domain.objects.get().pk)

    assert domain is not None
    assert domain.status == DomainStatus.ACTIVE
    assert "No edge proxy is configured" in domain.status_reason


def test_activation_waits_for_running_site(api: APIClient, records) -> None:
    site = create_site(api, "notyet")
    records("notyet.example.org", "A", ["127.0.0.1"])
    add(api, site, "notyet.example.org")
    check("notyet.example.org")

    domain = domains.activate_domain(Domain.objects.get().pk)

    assert domain is not None
    assert domain.status == DomainStatus.VERIFIED
    assert domain.status_reason == f"Waiting for site {site['hostname']} to run."


# --- removal --------------------------------------------------------------------------


def test_delete_then_another_site_may_add(api: APIClient, other_api: APIClient) -> None:
    site = create_site(api, "leaving")
    other = create_site(other_api, "arriving")
    add(api, site, "moving.example.org")

    deleted = api.delete(f"/api/v1/sites/{site['id']}/domains/Moving.Example.org")
    while_removing = add(other_api, other, "moving.example.org")
    detached = domains.detach_domain(Domain.objects.get().pk)
    after = add(other_api, other, "moving.example.org")

    assert deleted.status_code == 202
    assert deleted.json()["status"] == "removing"
    assert while_removing.status_code == 409
    assert detached is True
    assert after.status_code == 202
    assert Domain.objects.get().site.label == "arriving"


def test_delete_unknown_domain_is_404(api: APIClient) -> None:
    site = create_site(api, "nodomain")

    response = api.delete(f"/api/v1/sites/{site['id']}/domains/absent.example.org")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_delete_unicode_form_of_stored_name(api: APIClient) -> None:
    site = create_site(api, "unidelete")
    add(api, site, "xn--bcher-kva.example")

    response = api.delete(f"/api/v1/sites/{site['id']}/domains/bücher.example")

    assert response.status_code == 202
    assert Domain.objects.get().status == DomainStatus.REMOVING


def test_process_domains_runs_due_work(api: APIClient, records) -> None:
    site = create_site(api, "batch")
    records("batch.example.org", "A", ["127.0.0.1"])
    add(api, site, "batch.example.org")
    add(api, site, "gone.example.org")
    api.delete(f"/api/v1/sites/{site['id']}/domains/gone.example.org")

    counts = domains.process_domains()

    assert counts["checked"] == 1
    assert counts["removed"] == 1
    assert Domain.objects.get().status == DomainStatus.VERIFIED


# --- admin ------------------------------------------------------------------------------


def test_admin_lists_and_searches_domains(admin_client, api: APIClient) -> None:
    site = create_site(api, "adminview")
    add(api, site, "bücher.example")
    add(api, site, "other.example.org")

    page = admin_client.get("/admin/hosting/domain/", {"q": "xn--bcher"})

    assert page.status_code == 200
    text = page.content.decode()
    assert "xn--bcher-kva.example" in text
    assert "bücher.example" in text
    assert "other.example.org" not in text
    assert "Waiting for the first DNS check." in text


def test_admin_certificate_hides_private_key(admin_client, api: APIClient) -> None:
    from hosting.models import Certificate, CertificateStatus
    from provisioning.crypto import encrypt_private_key

    created = create_site(api, "certview")
    site = Site.objects.get(uuid=created["id"])
    certificate = Certificate.objects.create(
        key=f"hostname:{site.hostname}",
        kind="hostname",
        names=[site.hostname],
        challenge="http-01",
        site=site,
        status=CertificateStatus.ISSUED,
        not_after=timezone.now() + timedelta(days=10),
        private_key_encrypted=encrypt_private_key("-----BEGIN PRIVATE KEY-----\nsecret\n"),
    )

    listing = admin_client.get("/admin/hosting/certificate/", {"expiry": "alert"})
    detail = admin_client.get(f"/admin/hosting/certificate/{certificate.pk}/change/")

    assert listing.status_code == 200
    assert site.hostname in listing.content.decode()
    assert detail.status_code == 200
    assert certificate.private_key_encrypted not in detail.content.decode()
    assert "PRIVATE KEY" not in detail.content.decode()
