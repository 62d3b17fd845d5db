"""The Caddy edge driver against a real Caddy, with a real upstream HTTP server."""

import http.server
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from devstack.caddy import CaddyServer
from devstack.process import free_port
from provisioning.drivers.edge.base import NullEdgeDriver
from provisioning.drivers.edge.caddy import (
    CHALLENGE_ROUTES_PATH,
    SITE_ROUTES_PATH,
    CaddyEdgeDriver,
)
from provisioning.drivers.edge.factory import build_edge_driver
from provisioning.errors import PermanentError, TransientError
from tests.fixtures.tls import TestCertificateAuthority, https_get


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"upstream {self.server.server_port} host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCertificateAuthority:
    return TestCertificateAuthority(tmp_path_factory.mktemp("edge-ca"))


@pytest.fixture
def site(
    edge_driver: CaddyEdgeDriver, test_ca: TestCertificateAuthority
) -> Iterator[SimpleNamespace]:
    """A site id, its hostname and a loaded certificate; the route and cert are removed after."""
    site_id = uuid.uuid4().hex
    hostname = f"s{site_id[:10]}.edge.test"
    cert_pem, key_pem = test_ca.issue([hostname])
    edge_driver.load_certificate(cert_id=site_id, cert_pem=cert_pem, key_pem=key_pem)
    yield SimpleNamespace(id=site_id, hostname=hostname, cert_pem=cert_pem, key_pem=key_pem)
    edge_driver.remove_route(site_id)
    edge_driver.remove_certificate(site_id)


def _ids_in(caddy: CaddyServer, path: str) -> list[str]:
    items = requests.get(caddy.admin_url + path, timeout=5).json()
    return [item.get("@id", "") for item in items]


def test_route_reaches_upstream_over_https(
    edge_driver, caddy_server, upstream, site, test_ca
) -> None:
    edge_driver.ensure_route(site_id=site.id, hostnames=[site.hostname], upstream=upstream)

    answer = https_get(caddy_server.https_port, site.hostname, test_ca.path)

    assert answer.status == 200
    assert answer.body == f"upstream {upstream.split(':')[1]} host={site.hostname}"
    assert site.hostname in answer.peer_certificate.subject.rfc4514_string()


def test_repeated_calls_leave_one_object(edge_driver, caddy_server, upstream, site) -> None:
    for _ in range(3):
        edge_driver.ensure_route(site_id=site.id, hostnames=[site.hostname], upstream=upstream)
        edge_driver.set_suspended(site_id=site.id, hostnames=[site.hostname], suspended=True)
        edge_driver.load_certificate(cert_id=site.id, cert_pem=site.cert_pem, key_pem=site.key_pem)

    route_ids = _ids_in(caddy_server, SITE_ROUTES_PATH)
    cert_ids = _ids_in(caddy_server, "/config/apps/tls/certificates/load_pem")
    assert route_ids.count(f"hostyard-site-{site.id}") == 1
    assert route_ids.count(f"hostyard-suspended-{site.id}") == 1
    assert cert_ids.count(f"hostyard-cert-{site.id}") == 1
    assert edge_driver.list_certificates().count(site.id) == 1


def test_concurrent_creates_leave_one_route(edge_driver, caddy_server, upstream) -> None:
    site_ids = [uuid.uuid4().hex for _ in range(3)]
    errors: list[BaseException] = []

    # Each site is created by 4 threads at once; the driver sessions are per thread.
    drivers = [
        CaddyEdgeDriver(
            admin_url=caddy_server.admin_url,
            http_port=caddy_server.http_port,
            https_port=caddy_server.https_port,
        )
        for _ in range(4)
    ]
    threads = [
        threading.Thread(target=lambda d=driver, s=site_id: _run_create(d, s, upstream, errors))
        for site_id in site_ids
        for driver in drivers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    route_ids = _ids_in(caddy_server, SITE_ROUTES_PATH)
    for site_id in site_ids:
        assert route_ids.count(f"hostyard-site-{site_id}") == 1
        edge_driver.remove_route(site_id)


def _run_create(
    driver: CaddyEdgeDriver, site_id: str, upstream: str, errors: list[BaseException]
) -> None:
    try:
        driver.ensure_route(
            site_id=site_id, hostnames=[f"c{site_id[:10]}.edge.test"], upstream=upstream
        )
    except BaseException as exc:  # collected and asserted by the test
        errors.append(exc)


def test_suspended_page_over_https(edge_driver, caddy_server, upstream, site, test_ca) -> None:
    edge_driver.ensure_route(site_id=site.id, hostnames=[site.hostname], upstream=upstream)
    edge_driver.set_suspended(site_id=site.id, hostnames=[site.hostname], suspended=True)

    answer = https_get(caddy_server.https_port, site.hostname, test_ca.path)
    listed = {route.site_id: route for route in edge_driver.list_routes()}

    assert answer.status == 503
    assert "This site is suspended" in answer.body
    assert answer.headers["content-type"].startswith("text/html")
    assert listed[site.id].suspended is True
    assert listed[site.id].upstream == upstream

    edge_driver.set_suspended(site_id=site.id, hostnames=[site.hostname], suspended=False)
    resumed = https_get(caddy_server.https_port, site.hostname, test_ca.path)
    assert resumed.status == 200
    assert resumed.body.startswith("upstream ")


def test_remove_route_serves_not_found(edge_driver, caddy_server, upstream, site, test_ca) -> None:
    edge_driver.ensure_route(site_id=site.id, hostnames=[site.hostname], upstream=upstream)
    edge_driver.set_suspended(site_id=site.id, hostnames=[site.hostname], suspended=True)

    assert edge_driver.remove_route(site.id) is True
    assert edge_driver.remove_route(site.id) is False
    answer = https_get(caddy_server.https_port, site.hostname, test_ca.path)
    assert answer.status == 404
    assert "No site is configured" in answer.body
    assert site.id not in {route.site_id for route in edge_driver.list_routes()}


def test_broken_upstream_leaves_other_sites(edge_driver, caddy_server, upstream, test_ca) -> None:
    healthy_id, broken_id = uuid.uuid4().hex, uuid.uuid4().hex
    healthy, broken = f"h{healthy_id[:10]}.edge.test", f"b{broken_id[:10]}.edge.test"
    cert_pem, key_pem = test_ca.issue([healthy, broken])
    edge_driver.load_certificate(cert_id=healthy_id, cert_pem=cert_pem, key_pem=key_pem)
    edge_driver.ensure_route(site_id=healthy_id, hostnames=[healthy], upstream=upstream)
    # Nothing listens on this port, so the proxy cannot connect.
    edge_driver.ensure_route(
        site_id=broken_id, hostnames=[broken], upstream=f"127.0.0.1:{free_port()}"
    )

    with pytest.raises(PermanentError) as invalid:
        edge_driver.ensure_route(site_id=broken_id, hostnames=[broken], upstream="not an address")

    assert "Invalid upstream 'not an address'" in invalid.value.message
    assert https_get(caddy_server.https_port, broken, test_ca.path).status == 502
    assert https_get(caddy_server.https_port, healthy, test_ca.path).status == 200
    for site_id in (healthy_id, broken_id):
        edge_driver.remove_route(site_id)
    edge_driver.remove_certificate(healthy_id)


def test_mismatched_key_rejected_by_caddy(
    edge_driver, caddy_server, upstream, site, test_ca
) -> None:
    edge_driver.ensure_route(site_id=site.id, hostnames=[site.hostname], upstream=upstream)
    other_cert, _ = test_ca.issue([site.hostname])

    with pytest.raises(PermanentError) as rejected:
        edge_driver.load_certificate(cert_id=site.id, cert_pem=other_cert, key_pem=site.key_pem)

    assert rejected.value.code == "edge_config_rejected"
    assert "private key does not match public key" in rejected.value.message
    assert "PRIVATE KEY" not in rejected.value.message + rejected.value.detail
    # Caddy kept its previous configuration: the site still responds with its old certificate.
    assert https_get(caddy_server.https_port, site.hostname, test_ca.path).status == 200


def test_removed_certificate_is_not_served(edge_driver, caddy_server, upstream, site, test_ca):
    edge_driver.ensure_route(site_id=site.id, hostnames=[site.hostname], upstream=upstream)

    assert edge_driver.remove_certificate(site.id) is True
    assert edge_driver.remove_certificate(site.id) is False
    with pytest.raises(ssl.SSLError):
        https_get(caddy_server.https_port, site.hostname, test_ca.path)


def test_challenge_served_on_http(edge_driver, caddy_server) -> None:
    token = "tok" + uuid.uuid4().hex
    key_authorization = f"{token}.thumbprint_Abc-123"
    url = f"http://127.0.0.1:{caddy_server.http_port}/.well-known/acme-challenge/{token}"

    edge_driver.add_challenge(token, key_authorization)
    edge_driver.add_challenge(token, key_authorization)
    answer = requests.get(url, headers={"Host": "any.example.org"}, timeout=5)
    assert answer.status_code == 200
    assert answer.text == key_authorization
    assert _ids_in(caddy_server, CHALLENGE_ROUTES_PATH).count(f"hostyard-challenge-{token}") == 1

    assert edge_driver.remove_challenge(token) is True
    assert edge_driver.remove_challenge(token) is False
    after_removal = requests.get(
        url, headers={"Host": "any.example.org"}, allow_redirects=False, timeout=5
    )
    assert after_removal.status_code == 308


def test_http_redirects_to_https(caddy_server) -> None:
    answer = requests.get(
        f"http://127.0.0.1:{caddy_server.http_port}/some/page?x=1",
        headers={"Host": "www.example.org"},
        allow_redirects=False,
        timeout=5,
    )

    assert answer.status_code == 308
    expected = f"https://www.example.org:{caddy_server.https_port}/some/page?x=1"
    assert answer.headers["Location"] == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda d: d.ensure_route(site_id="bad/id", hostnames=["a.test"], upstream="1.2.3.4:80"),
            "Invalid site id 'bad/id'",
        ),
        (
            lambda d: d.ensure_route(site_id="ok", hostnames=["a b.test"], upstream="1.2.3.4:80"),
            "Invalid hostname 'a b.test'",
        ),
        (
            lambda d: d.ensure_route(site_id="ok", hostnames=[], upstream="1.2.3.4:80"),
            "Invalid hostnames []",
        ),
        (
            lambda d: d.ensure_route(site_id="ok", hostnames=["a.test"], upstream="1.2.3.4:0"),
            "Invalid upstream '1.2.3.4:0'",
        ),
        (
            lambda d: d.ensure_route(site_id="ok", hostnames=["a.test"], upstream="[zz::1]:80"),
            "Invalid upstream '[zz::1]:80'",
        ),
        (lambda d: d.add_challenge("tok/../x", "tok.abc"), "Invalid ACME token 'tok/../x'"),
        (lambda d: d.add_challenge("tok", "other.abc"), "Invalid key authorization"),
        (lambda d: d.add_challenge("tok", "tok.{http.request.uri}"), "Invalid key authorization"),
        (
            lambda d: d.load_certificate(cert_id="c1", cert_pem="garbage", key_pem="x"),
            "not a valid PEM chain",
        ),
    ],
)
def test_invalid_input_rejected_before_caddy(edge_driver, caddy_server, call, message) -> None:
    before = requests.get(caddy_server.admin_url + "/config/", timeout=5).json()

    with pytest.raises(PermanentError) as rejected:
        call(edge_driver)

    assert message in rejected.value.message
    assert requests.get(caddy_server.admin_url + "/config/", timeout=5).json() == before


def test_key_pem_checked_before_caddy(edge_driver, test_ca) -> None:
    cert_pem, _ = test_ca.issue(["k.edge.test"])

    with pytest.raises(PermanentError) as rejected:
        edge_driver.load_certificate(cert_id="k1", cert_pem=cert_pem, key_pem="not a key")

    assert "not in PEM format" in rejected.value.message


def test_unreachable_admin_api_is_transient() -> None:
    driver = CaddyEdgeDriver(admin_url=f"http://127.0.0.1:{free_port()}", timeout=2)

    with pytest.raises(TransientError) as unreachable:
        driver.list_routes()

    assert unreachable.value.code == "edge_unreachable"
    assert "did not respond" in unreachable.value.message


def test_skeleton_recreated_when_missing(tmp_path: Path) -> None:
    server = CaddyServer(
        state_dir=tmp_path, admin_port=free_port(), http_port=free_port(), https_port=free_port()
    )
    server.start()
    try:
        requests.delete(server.admin_url + "/config/apps", timeout=5).raise_for_status()
        driver = CaddyEdgeDriver(
            admin_url=server.admin_url, http_port=server.http_port, https_port=server.https_port
        )

        driver.add_challenge("tok1", "tok1.abc")

        answer = requests.get(
            f"http://127.0.0.1:{server.http_port}/.well-known/acme-challenge/tok1", timeout=5
        )
        assert answer.text == "tok1.abc"
        assert driver.list_routes() == []
        assert driver.list_certificates() == []
    finally:
        server.stop()


def test_skeleton_without_route_list_is_permanent(tmp_path: Path) -> None:
    server = CaddyServer(
        state_dir=tmp_path, admin_port=free_port(), http_port=free_port(), https_port=free_port()
    )
    server.start()
    try:
        # Someone replaced the HTTPS server with one of their own under the same name.
        path = "/config/apps/http/servers/hostyard_https"
        foreign = {"listen": [f"127.0.0.1:{server.https_port}"], "routes": []}
        requests.patch(server.admin_url + path, json=foreign, timeout=5).raise_for_status()
        driver = CaddyEdgeDriver(
            admin_url=server.admin_url, http_port=server.http_port, https_port=server.https_port
        )

        with pytest.raises(PermanentError) as invalid:
            driver.ensure_route(site_id="s1", hostnames=["a.test"], upstream="127.0.0.1:9")

        assert "without the route list 'hostyard-sites'" in invalid.value.message
    finally:
        server.stop()


def test_factory_builds_configured_driver() -> None:
    settings_obj = SimpleNamespace(
        HOSTYARD_EDGE_DRIVER="caddy",
        HOSTYARD_CADDY_ADMIN_URL="http://127.0.0.1:2019/",
        HOSTYARD_EDGE_HTTP_PORT=8080,
        HOSTYARD_EDGE_HTTPS_PORT=8443,
    )

    caddy = build_edge_driver(settings_obj)
    settings_obj.HOSTYARD_EDGE_DRIVER = "none"
    null = build_edge_driver(settings_obj)
    settings_obj.HOSTYARD_EDGE_DRIVER = "traefik"
    with pytest.raises(PermanentError) as unknown:
        build_edge_driver(settings_obj)

    assert isinstance(caddy, CaddyEdgeDriver)
    assert caddy.admin_url == "http://127.0.0.1:2019"
    assert caddy.https_port == 8443
    assert isinstance(null, NullEdgeDriver)
    assert null.list_routes() == []
    assert "Unknown edge driver 'traefik'" in unknown.value.message
