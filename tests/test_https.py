"""Sites and custom domains over HTTPS, against real Knot, Pebble, Caddy and Docker.

Pebble validates HTTP-01 through Caddy's HTTP port and DNS-01 through Knot, so every
certificate here went through a real ACME validation. Requests reach Caddy's HTTPS
port with the site's name as SNI and verify the chain against Pebble's root.
"""

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from django.db import connection
from django.utils import timezone

from devstack.caddy import CaddyServer
from devstack.knot import KnotServer
from devstack.pebble import PebbleServer
from devstack.process import free_port
from hosting import domains, lifecycle, services
from hosting.models import (
    App,
    Certificate,
    CertificateKind,
    CertificateStatus,
    Domain,
    DomainStatus,
    Organization,
    Plan,
    Site,
    SiteEvent,
)
from provisioning import certificates
from provisioning.crypto import decrypt_private_key, encrypt_private_key
from provisioning.drivers import registry
from provisioning.engine.runner import Outcome
from provisioning.engine.steps import StepContext, get_step
from provisioning.models import Operation, OperationStep
from tests.fixtures.dns import resolve_records, set_records
from tests.fixtures.platform import client_for, wait_for
from tests.fixtures.tls import TestCertificateAuthority, https_get, start_pebble
from tests.lifecycle_helpers import run_to_end

ZONE = "sites.hostyard.test"
DEMO_PAGE = "Hostyard demo site"

pytestmark = pytest.mark.usefixtures("catalog")


@pytest.fixture
def pebble_root(pebble_server: PebbleServer, tmp_path: Path) -> Path:
    path = tmp_path / "pebble-root.pem"
    path.write_text(pebble_server.root_pem())
    return path


def server_settings(
    knot: KnotServer, caddy: CaddyServer, pebble: PebbleServer, pebble_root: Path
) -> dict[str, object]:
    """Return the settings that point DNS, ACME, the edge and the checks at the servers."""
    return {
        "HOSTYARD_PLATFORM_DOMAIN": ZONE,
        "HOSTYARD_PUBLIC_IPV4": "127.0.0.1",
        "HOSTYARD_PUBLIC_IPV6": "",
        "HOSTYARD_DNS_DRIVER": "rfc2136",
        "HOSTYARD_RFC2136_SERVER": knot.server,
        "HOSTYARD_RFC2136_ZONE": ZONE,
        "HOSTYARD_RFC2136_TSIG_NAME": knot.tsig_name,
        "HOSTYARD_RFC2136_TSIG_SECRET": knot.tsig_secret,
        "HOSTYARD_RFC2136_TSIG_ALGORITHM": knot.tsig_algorithm,
        "HOSTYARD_DOMAIN_CHECK_RESOLVERS": [knot.server],
        "HOSTYARD_EDGE_DRIVER": "caddy",
        "HOSTYARD_CADDY_ADMIN_URL": caddy.admin_url,
        "HOSTYARD_EDGE_HTTP_PORT": caddy.http_port,
        "HOSTYARD_EDGE_HTTPS_PORT": caddy.https_port,
        "HOSTYARD_ACME_DIRECTORY_URL": pebble.directory_url,
        "HOSTYARD_ACME_CA_BUNDLE": str(pebble.ca_bundle_path),
        "HOSTYARD_HTTPS_VERIFY_CA_BUNDLE": str(pebble_root),
        "HOSTYARD_ACME_PLATFORM_WILDCARD": True,
    }


def forget_edge_state() -> None:
    """Remove this test's routes and certificates from the shared Caddy.

    The next test's SNI lookups then see only its own certificates.
    """
    edge = registry.edge()
    for certificate in Certificate.objects.all():
        edge.remove_certificate(certificate.edge_id)
    for site_uuid in Site.objects.values_list("uuid", flat=True):
        edge.remove_route(str(site_uuid))


@pytest.fixture
def edge_settings(
    settings,
    db: None,
    knot_server: KnotServer,
    caddy_server: CaddyServer,
    pebble_server: PebbleServer,
    pebble_root: Path,
) -> Iterator[None]:
    """Point this process's settings at the session's servers."""
    values = server_settings(knot_server, caddy_server, pebble_server, pebble_root)
    for name, value in values.items():
        setattr(settings, name, value)
    registry.reset()
    yield
    forget_edge_state()
    registry.reset()


@pytest.fixture
def customer_records(knot_server: KnotServer) -> Iterator:
    """Set records in the customer zones of Knot; all are deleted afterwards."""
    written: list[tuple[str, str]] = []

    def write(name: str, rdtype: str, values: list[str]) -> None:
        set_records(knot_server, name, rdtype, values)
        written.append((name, rdtype))

    yield write
    for name, rdtype in written:
        set_records(knot_server, name, rdtype, [])


def running_site(organization: Organization) -> Site:
    """Sign up a site and run its create operation in this process until it finishes."""
    label = "h" + uuid.uuid4().hex[:12]
    site, operation = services.sign_up_site(
        organization=organization,
        customer_email=f"{label}@riverside.edu",
        app=App.objects.get(slug="demo"),
        plan=Plan.objects.get(slug="micro"),
        label=label,
    )
    outcome = run_to_end(operation)
    failed = list(operation.steps.exclude(status__in=["succeeded", "skipped"]).values())
    assert outcome is Outcome.SUCCEEDED, failed
    site.refresh_from_db()
    return site


def run_step(site: Site, name: str, results: dict | None = None) -> dict:
    """Run one step directly, as an operation would with ``results`` of earlier steps."""
    operation = site.operations.order_by("id").first()
    assert operation is not None
    ctx = StepContext(
        operation=operation,
        step=OperationStep(operation=operation, position=99, name=name),
        site=site,
        results=results or {},
    )
    return get_step(name).run(ctx) or {}


def san_names(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.DNSName)


def verified_domain(site: Site, name: str) -> Domain:
    domain, _ = domains.add_domain(site=site, raw_name=name)
    domains.check_domain_now(domain.pk)
    domain.refresh_from_db()
    assert domain.status == DomainStatus.VERIFIED, domain.status_reason
    return domain


# --- platform hostnames -----------------------------------------------------------------


@pytest.mark.usefixtures("edge_settings")
def test_site_reachable_over_https(
    engine, organization, caddy_server: CaddyServer, knot_server: KnotServer, pebble_root: Path
) -> None:
    site = running_site(organization)

    answer = https_get(caddy_server.https_port, site.hostname, pebble_root)

    assert answer.status == 200
    assert DEMO_PAGE in answer.body
    assert site.hostname in answer.body
    assert san_names(answer.peer_certificate) == [f"*.{ZONE}"]
    assert resolve_records(knot_server, site.hostname, "A") == ["127.0.0.1"]
    steps = dict(site.operations.get().steps.values_list("name", "status"))
    assert set(steps.values()) == {"succeeded"}
    verify = site.operations.get().steps.get(name="verify_https")
    assert verify.result["status"] == 200


@pytest.mark.usefixtures("edge_settings")
def test_sites_share_one_wildcard_certificate(
    engine, organization, caddy_server: CaddyServer, pebble_root: Path
) -> None:
    first = running_site(organization)
    second = running_site(organization)
    # A repeated step (a retry after a crash) finds the stored certificate too.
    run_step(second, "issue_certificate")

    [certificate] = Certificate.objects.all()
    answer = https_get(caddy_server.https_port, second.hostname, pebble_root)

    assert certificate.kind == CertificateKind.WILDCARD
    assert certificate.names == [f"*.{ZONE}"]
    assert certificate.orders == 1
    assert certificate.site is None
    assert answer.status == 200
    assert first.hostname not in answer.body
    assert second.hostname in answer.body


@pytest.mark.usefixtures("edge_settings")
def test_http01_certificate_per_hostname(
    settings, engine, organization, caddy_server: CaddyServer, pebble_root: Path
) -> None:
    settings.HOSTYARD_ACME_PLATFORM_WILDCARD = False
    site = running_site(organization)

    answer = https_get(caddy_server.https_port, site.hostname, pebble_root)
    certificate = Certificate.objects.get()

    assert answer.status == 200
    assert san_names(answer.peer_certificate) == [site.hostname]
    assert certificate.kind == CertificateKind.HOSTNAME
    assert certificate.challenge == "http-01"
    assert certificate.site == site


@pytest.mark.usefixtures("edge_settings")
def test_concurrent_requests_place_one_order(transactional_db: None) -> None:
    spec = {
        "key": f"wildcard:{ZONE}",
        "kind": CertificateKind.WILDCARD,
        "names": [f"*.{ZONE}"],
        "challenge": "dns-01",
        "site": None,
    }
    outcomes: list[str] = []

    def request_certificate() -> None:
        try:
            certificates.ensure_certificate(**spec, target=ZONE)
            outcomes.append("issued")
        except certificates.OrderDeferred:
            outcomes.append("deferred")
        finally:
            connection.close()

    workers = [threading.Thread(target=request_certificate) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert len(outcomes) == 3
    assert "issued" in outcomes
    assert Certificate.objects.get().orders == 1


@pytest.mark.usefixtures("edge_settings")
def test_private_key_stored_encrypted(engine, organization) -> None:
    running_site(organization)

    certificate = Certificate.objects.get()

    assert certificate.fullchain_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in certificate.private_key_encrypted
    assert "PRIVATE KEY" not in repr(certificate)
    assert decrypt_private_key(certificate.private_key_encrypted).startswith(
        "-----BEGIN PRIVATE KEY-----"
    )


# --- custom domains -----------------------------------------------------------------------


@pytest.mark.usefixtures("edge_settings")
def test_custom_domain_becomes_active(
    engine, organization, caddy_server: CaddyServer, pebble_root: Path, customer_records
) -> None:
    site = running_site(organization)
    name = f"d{uuid.uuid4().hex[:10]}.example.org"
    customer_records(name, "A", ["127.0.0.1"])
    domain = verified_domain(site, name)

    domains.activate_domain(domain.pk)
    domain.refresh_from_db()
    answer = https_get(caddy_server.https_port, name, pebble_root)

    assert domain.status == DomainStatus.ACTIVE
    assert domain.status_reason.startswith("Served over HTTPS with a certificate valid until")
    assert domain.certificate is not None
    assert domain.certificate.names == [name]
    assert answer.status == 200
    assert DEMO_PAGE in answer.body
    assert san_names(answer.peer_certificate) == [name]


@pytest.mark.usefixtures("edge_settings")
def test_wrong_a_record_gets_no_order(engine, organization, customer_records) -> None:
    site = running_site(organization)
    name = f"d{uuid.uuid4().hex[:10]}.example.org"
    customer_records(name, "A", ["127.0.0.1"])
    domain = verified_domain(site, name)
    # The customer changes the record after the check passed.
    customer_records(name, "A", ["203.0.113.9"])

    domains.activate_domain(domain.pk)
    domain.refresh_from_db()

    assert domain.status == DomainStatus.PENDING
    assert "The A record is 203.0.113.9, expected 127.0.0.1" in domain.status_reason
    assert domain.found["a"] == ["203.0.113.9"]
    assert Certificate.objects.get(key=f"domain:{name}").orders == 0


@pytest.mark.usefixtures("edge_settings")
def test_edge_self_check_failure_gets_no_order(settings, customer_records) -> None:
    name = f"d{uuid.uuid4().hex[:10]}.example.org"
    customer_records(name, "A", ["127.0.0.1"])
    # Nothing listens on this port, so the token written to the edge cannot be read back.
    settings.HOSTYARD_EDGE_HTTP_PORT = free_port()

    with pytest.raises(
        certificates.PrecheckFailed, match="did not respond to HTTP requests"
    ) as error:
        certificates.ensure_certificate(
            key=f"domain:{name}",
            kind=CertificateKind.DOMAIN,
            names=[name],
            challenge="http-01",
            site=None,
            target=name,
        )

    certificate = Certificate.objects.get(key=f"domain:{name}")
    assert certificate.orders == 0
    assert certificate.status == CertificateStatus.PENDING
    assert certificate.last_error == error.value.message


@pytest.mark.usefixtures("edge_settings")
def test_rate_limit_honoured_without_order(customer_records) -> None:
    name = f"d{uuid.uuid4().hex[:10]}.example.org"
    customer_records(name, "A", ["127.0.0.1"])
    certificate = Certificate.objects.create(
        key=f"domain:{name}",
        kind=CertificateKind.DOMAIN,
        names=[name],
        challenge="http-01",
        rate_limited_until=timezone.now() + timedelta(hours=1),
        last_error="The CA rate-limited the request.",
    )

    with pytest.raises(certificates.OrderDeferred, match="No new order for") as error:
        certificates.order_certificate(certificate, target=name)

    certificate.refresh_from_db()
    assert certificate.orders == 0
    assert error.value.retry_after is not None
    assert 3500 < error.value.retry_after <= 3600


@pytest.mark.usefixtures("edge_settings")
def test_edge_missing_on_ipv6_gets_no_order(settings, customer_records) -> None:
    name = f"d{uuid.uuid4().hex[:10]}.example.org"
    customer_records(name, "A", ["127.0.0.1"])
    customer_records(name, "AAAA", ["::1"])
    # The name points at the platform on both families, but Caddy listens on IPv4 only.
    settings.HOSTYARD_PUBLIC_IPV6 = "::1"

    with pytest.raises(certificates.PrecheckFailed, match=r"at http://\[::1\]:"):
        certificates.ensure_certificate(
            key=f"domain:{name}",
            kind=CertificateKind.DOMAIN,
            names=[name],
            challenge="http-01",
            site=None,
            target=name,
        )

    assert Certificate.objects.get(key=f"domain:{name}").orders == 0


@pytest.fixture
def misdirected_pebble(
    tmp_path: Path, knot_server: KnotServer, caddy_server: CaddyServer
) -> Iterator[PebbleServer]:
    """A second Pebble that validates HTTP-01 on a port where nothing listens."""
    nowhere = SimpleNamespace(http_port=free_port(), https_port=caddy_server.https_port)
    server = start_pebble(tmp_path / "pebble", knot=knot_server, caddy=nowhere)  # type: ignore[arg-type]
    yield server
    server.stop()


@pytest.mark.usefixtures("edge_settings")
def test_failed_validation_spaces_next_order(
    settings, misdirected_pebble: PebbleServer, customer_records
) -> None:
    settings.HOSTYARD_ACME_DIRECTORY_URL = misdirected_pebble.directory_url
    settings.HOSTYARD_ACME_CA_BUNDLE = str(misdirected_pebble.ca_bundle_path)
    registry.reset()
    name = f"d{uuid.uuid4().hex[:10]}.example.org"
    customer_records(name, "A", ["127.0.0.1"])
    spec = {"key": f"domain:{name}", "kind": CertificateKind.DOMAIN, "names": [name]}

    with pytest.raises(certificates.PermanentError, match="could not validate") as failed:
        certificates.ensure_certificate(**spec, challenge="http-01", site=None, target=name)
    with pytest.raises(certificates.OrderDeferred, match="No new order for") as deferred:
        certificates.ensure_certificate(**spec, challenge="http-01", site=None, target=name)

    certificate = Certificate.objects.get(key=f"domain:{name}")
    assert failed.value.code == "acme_validation_failed"
    assert certificate.orders == 1
    assert certificate.failed_attempts == 1
    assert certificate.status == CertificateStatus.FAILED
    assert certificate.last_error == failed.value.message
    assert deferred.value.retry_after is not None
    assert 0 < deferred.value.retry_after <= settings.HOSTYARD_CERT_RETRY_BASE_SECONDS


# --- renewal and alerts ---------------------------------------------------------------------


def expiring_copy(
    certificate: Certificate, names: list[str], authority: TestCertificateAuthority
) -> None:
    """Replace the row's certificate with one from ``authority`` that expires within a day."""
    cert_pem, key_pem = authority.issue(names)
    leaf = x509.load_pem_x509_certificate(cert_pem.encode())
    Certificate.objects.filter(pk=certificate.pk).update(
        fullchain_pem=cert_pem,
        private_key_encrypted=encrypt_private_key(key_pem),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )
    certificate.refresh_from_db()


@pytest.mark.usefixtures("edge_settings")
def test_renewal_replaces_certificate_without_downtime(
    settings, engine, organization, caddy_server: CaddyServer, pebble_root: Path, tmp_path: Path
) -> None:
    settings.HOSTYARD_ACME_PLATFORM_WILDCARD = False
    site = running_site(organization)
    certificate = Certificate.objects.get()
    authority = TestCertificateAuthority(tmp_path)
    expiring_copy(certificate, [site.hostname], authority)
    certificates.load_into_edge(certificate)
    both_roots = tmp_path / "both-roots.pem"
    both_roots.write_text(authority.path.read_text() + pebble_root.read_text())
    before = https_get(caddy_server.https_port, site.hostname, both_roots)

    statuses: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def keep_requesting() -> None:
        # Bounded: at most 2000 requests even if renewal hangs.
        for _ in range(2000):
            if stop.is_set():
                return
            try:
                statuses.append(
                    https_get(caddy_server.https_port, site.hostname, both_roots).status
                )
            except OSError as exc:
                errors.append(repr(exc))

    client = threading.Thread(target=keep_requesting)
    client.start()
    try:
        counts = certificates.renew_due_certificates()
    finally:
        stop.set()
        client.join(timeout=60)

    certificate.refresh_from_db()
    after = https_get(caddy_server.https_port, site.hostname, pebble_root)
    assert before.peer_certificate.issuer == authority.certificate.subject
    assert counts == {"renewed": 1, "deferred": 0, "failed": 0}
    assert errors == []
    assert statuses
    assert set(statuses) == {200}
    assert certificate.orders == 2
    assert certificate.not_after > timezone.now() + timedelta(
        days=settings.HOSTYARD_CERT_RENEW_DAYS
    )
    assert after.peer_certificate.issuer != authority.certificate.subject
    assert after.peer_certificate.not_valid_after_utc == certificate.not_after


@pytest.mark.usefixtures("edge_settings")
def test_renewal_skips_certificates_far_from_expiry(engine, organization) -> None:
    running_site(organization)

    counts = certificates.renew_due_certificates()

    assert counts == {"renewed": 0, "deferred": 0, "failed": 0}
    assert Certificate.objects.get().orders == 1


def test_expiry_alert_without_renewal(organization) -> None:
    site, _ = services.sign_up_site(
        organization=organization,
        customer_email="alert@riverside.edu",
        app=App.objects.get(slug="demo"),
        plan=Plan.objects.get(slug="micro"),
        label="alerted",
    )
    Certificate.objects.create(
        key=f"hostname:{site.hostname}",
        kind=CertificateKind.HOSTNAME,
        names=[site.hostname],
        challenge="http-01",
        site=site,
        status=CertificateStatus.ISSUED,
        not_after=timezone.now() + timedelta(days=5),
        last_error="The CA rate-limited the request.",
    )
    Certificate.objects.create(
        key="hostname:fresh.sites.hostyard.test",
        kind=CertificateKind.HOSTNAME,
        names=["fresh.sites.hostyard.test"],
        challenge="http-01",
        status=CertificateStatus.ISSUED,
        not_after=timezone.now() + timedelta(days=60),
    )

    alerted = certificates.alert_expiring_certificates()
    again = certificates.alert_expiring_certificates()

    [event] = SiteEvent.objects.filter(site=site)
    assert [c.key for c in alerted] == [f"hostname:{site.hostname}"]
    assert again == []
    assert event.level == SiteEvent.Level.ERROR
    assert event.kind == "certificate_expiring"
    assert site.hostname in event.message
    assert "The CA rate-limited the request." in event.message


def test_wildcard_expiry_alerts_every_live_site(organization) -> None:
    site, _ = services.sign_up_site(
        organization=organization,
        customer_email="wild@riverside.edu",
        app=App.objects.get(slug="demo"),
        plan=Plan.objects.get(slug="micro"),
        label="wildsite",
    )
    Site.objects.filter(pk=site.pk).update(status="running")
    Certificate.objects.create(
        key=f"wildcard:{ZONE}",
        kind=CertificateKind.WILDCARD,
        names=[f"*.{ZONE}"],
        challenge="dns-01",
        status=CertificateStatus.ISSUED,
        not_after=timezone.now() + timedelta(days=3),
    )

    certificates.alert_expiring_certificates()

    [event] = SiteEvent.objects.filter(site=site)
    assert f"*.{ZONE}" in event.message
    assert "no renewal attempt recorded" in event.message


# --- suspension and termination ------------------------------------------------------------


@pytest.mark.usefixtures("edge_settings")
def test_suspended_page_over_https(
    engine, organization, caddy_server: CaddyServer, pebble_root: Path
) -> None:
    site = running_site(organization)

    run_step(site, "edge_suspend")
    suspended = https_get(caddy_server.https_port, site.hostname, pebble_root)
    upstream = site.operations.get().steps.get(name="wait_healthy").result["upstream"]
    resume = run_step(site, "edge_resume", {"wait_healthy": {"upstream": upstream}})
    resumed = https_get(caddy_server.https_port, site.hostname, pebble_root)

    assert suspended.status == 503
    assert "This site is suspended" in suspended.body
    assert resume["upstream"] == upstream
    assert resumed.status == 200
    assert DEMO_PAGE in resumed.body


@pytest.mark.usefixtures("edge_settings")
def test_suspend_operation_serves_suspended_page(
    engine, organization, caddy_server: CaddyServer, pebble_root: Path
) -> None:
    site = running_site(organization)

    suspend = lifecycle.suspend_site(site=site, reason="billing", requested_by="tests")
    assert run_to_end(suspend) is Outcome.SUCCEEDED
    suspended = https_get(caddy_server.https_port, site.hostname, pebble_root)
    unsuspend = lifecycle.unsuspend_site(site=site, requested_by="tests")
    assert run_to_end(unsuspend) is Outcome.SUCCEEDED
    resumed = https_get(caddy_server.https_port, site.hostname, pebble_root)

    site.refresh_from_db()
    assert suspended.status == 503
    assert "This site is suspended" in suspended.body
    assert resumed.status == 200
    assert DEMO_PAGE in resumed.body
    assert site.status == "running"


@pytest.mark.usefixtures("edge_settings")
def test_terminate_removes_route_and_records(
    engine, organization, caddy_server: CaddyServer, knot_server: KnotServer, pebble_root: Path
) -> None:
    site = running_site(organization)
    domains.add_domain(site=site, raw_name="leaving.example.org")

    operation = services.terminate_site(site=site)
    outcome = run_to_end(operation)
    answer = https_get(caddy_server.https_port, site.hostname, pebble_root)

    assert outcome is Outcome.SUCCEEDED
    assert answer.status == 404
    assert resolve_records(knot_server, site.hostname, "A") == []
    # The shared wildcard stays for the other sites.
    assert Certificate.objects.filter(kind=CertificateKind.WILDCARD).exists()
    assert not Domain.objects.filter(name="leaving.example.org").exists()


# --- a real worker --------------------------------------------------------------------------


@pytest.fixture
def worker_env(
    monkeypatch,
    settings,
    transactional_db: None,
    knot_server: KnotServer,
    caddy_server: CaddyServer,
    pebble_server: PebbleServer,
    pebble_root: Path,
) -> Iterator[None]:
    """Point this process and, through the environment, worker subprocesses at the servers.

    Request it before ``worker_factory``, which copies the environment when it starts.
    """
    values = server_settings(knot_server, caddy_server, pebble_server, pebble_root)
    for name, value in values.items():
        setattr(settings, name, value)
        text = ",".join(value) if isinstance(value, list) else str(value)
        monkeypatch.setenv(name, text)
    monkeypatch.setenv("HOSTYARD_DOMAIN_CHECK_BASE_SECONDS", "1")
    registry.reset()
    yield
    forget_edge_state()
    registry.reset()


def test_worker_serves_site_and_domain_over_https(
    worker_env,
    catalog,
    engine,
    worker_factory,
    caddy_server: CaddyServer,
    pebble_root: Path,
    customer_records,
) -> None:
    organization = Organization.objects.create(name="Riverside", slug="riverside")
    api = client_for(organization)
    worker_factory()
    label = "w" + uuid.uuid4().hex[:12]
    name = f"{label}.example.org"
    customer_records(name, "A", ["127.0.0.1"])

    created = api.post(
        "/api/v1/sites",
        {"customer_email": "ada@riverside.edu", "app": "demo", "plan": "micro", "label": label},
        format="json",
    ).json()
    wait_for(
        lambda: Operation.objects.get(uuid=created["operation"]["id"]).status == "succeeded",
        message="the create operation",
    )
    site_answer = https_get(caddy_server.https_port, created["hostname"], pebble_root)
    added = api.post(f"/api/v1/sites/{created['id']}/domains", {"domain": name}, format="json")
    wait_for(
        lambda: Domain.objects.get(name=name).status == DomainStatus.ACTIVE,
        message=f"{name} to become active",
    )
    domain_answer = https_get(caddy_server.https_port, name, pebble_root)
    listing = api.get(f"/api/v1/sites/{created['id']}/domains").json()

    assert site_answer.status == 200
    assert DEMO_PAGE in site_answer.body
    assert added.status_code == 202
    assert domain_answer.status == 200
    assert created["hostname"] in domain_answer.body
    assert listing[0]["status"] == "active"
    assert "PRIVATE KEY" not in str(listing)
