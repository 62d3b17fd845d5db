"""ACME issuance against a real Pebble, validating through a real Caddy and a real Knot."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from devstack.caddy import CaddyServer
from devstack.knot import KnotServer
from devstack.pebble import PebbleServer
from devstack.process import free_port
from provisioning.drivers.acme.client import AcmeClient, acme_error
from provisioning.drivers.acme.factory import build_acme_client
from provisioning.drivers.edge.caddy import CHALLENGE_ROUTES_PATH, CaddyEdgeDriver
from provisioning.errors import PermanentError, TransientError
from tests.fixtures.dns import resolve_records, set_records
from tests.fixtures.tls import TestCertificateAuthority, https_get, start_pebble

ZONE = "sites.hostyard.test"


@pytest.fixture
def hostname(knot_server: KnotServer) -> Iterator[str]:
    """A new name in the platform zone whose A record points at the edge (127.0.0.1)."""
    name = f"w{uuid.uuid4().hex[:12]}.{ZONE}"
    set_records(knot_server, name, "A", ["127.0.0.1"])
    yield name
    set_records(knot_server, name, "A", [])


@pytest.fixture(scope="module")
def account(acme_client: AcmeClient):
    return acme_client.register_account()


def _verify_chain(fullchain_pem: str, root_pem: str, name: str) -> x509.Certificate:
    """Verify the chain up to Pebble's current root for ``name``; return the leaf."""
    leaf, *intermediates = x509.load_pem_x509_certificates(fullchain_pem.encode())
    root = x509.load_pem_x509_certificate(root_pem.encode())
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(name))
    verifier.verify(leaf, intermediates)
    return leaf


def _challenge_route_ids(caddy: CaddyServer) -> list[str]:
    routes = requests.get(caddy.admin_url + CHALLENGE_ROUTES_PATH, timeout=5).json()
    return [route["@id"] for route in routes]


def test_http01_certificate_served_by_edge(
    acme_client, account, pebble_server, caddy_server, edge_driver, hostname, tmp_path
) -> None:
    issued = acme_client.issue_certificate(
        names=[hostname], challenge="http-01", account_key_pem=account.key_pem
    )

    root_pem = pebble_server.root_pem()
    leaf = _verify_chain(issued.cert_pem, root_pem, hostname)
    assert issued.names == (hostname,)
    assert issued.not_before < issued.not_after
    assert issued.not_after == leaf.not_valid_after_utc
    assert _challenge_route_ids(caddy_server) == []

    site_id = uuid.uuid4().hex
    root_path = tmp_path / "pebble-root.pem"
    root_path.write_text(root_pem)
    edge_driver.load_certificate(cert_id=site_id, cert_pem=issued.cert_pem, key_pem=issued.key_pem)
    edge_driver.set_suspended(site_id=site_id, hostnames=[hostname], suspended=True)
    try:
        answer = https_get(caddy_server.https_port, hostname, root_path)
    finally:
        edge_driver.remove_route(site_id)
        edge_driver.remove_certificate(site_id)

    assert answer.status == 503
    assert answer.peer_certificate == leaf


def test_account_reused_by_key(acme_client, account, pebble_server) -> None:
    again = acme_client.register_account(account_key_pem=account.key_pem)
    fresh_client = AcmeClient(
        directory_url=pebble_server.directory_url, ca_bundle=str(pebble_server.ca_bundle_path)
    )
    from_new_client = fresh_client.register_account(account_key_pem=account.key_pem)

    assert again.uri == account.uri
    assert from_new_client.uri == account.uri
    assert again.key_pem == account.key_pem


def test_rsa_account_key_works(acme_client, pebble_server) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    registered = acme_client.register_account(account_key_pem=key_pem)

    assert registered.uri.startswith(f"https://127.0.0.1:{pebble_server.port}/")


def test_dns01_wildcard_certificate(
    acme_client, account, pebble_server, knot_server, platform_dns_driver
) -> None:
    names = [f"*.{ZONE}", ZONE]

    issued = acme_client.issue_certificate(
        names=names, challenge="dns-01", account_key_pem=account.key_pem
    )

    root_pem = pebble_server.root_pem()
    _verify_chain(issued.cert_pem, root_pem, f"anything.{ZONE}")
    _verify_chain(issued.cert_pem, root_pem, ZONE)
    assert sorted(issued.names) == sorted(names)
    assert resolve_records(knot_server, f"_acme-challenge.{ZONE}", "TXT") == []


def test_name_pointing_elsewhere_fails(
    acme_client, account, knot_server, caddy_server, hostname
) -> None:
    # 127.0.0.2 is loopback, and nothing listens on the edge's HTTP port there.
    set_records(knot_server, hostname, "A", ["127.0.0.2"])

    with pytest.raises(PermanentError) as failed:
        acme_client.issue_certificate(
            names=[hostname], challenge="http-01", account_key_pem=account.key_pem
        )

    assert failed.value.code == "acme_validation_failed", failed.value.detail
    assert f"The CA could not validate {hostname} with http-01" in failed.value.message
    assert "refused" in failed.value.message.lower()
    assert "A/AAAA records point at the platform" in failed.value.message
    assert _challenge_route_ids(caddy_server) == []


def test_wrong_answer_is_unauthorized(
    account, pebble_server, caddy_server, edge_driver, hostname
) -> None:
    class WrongAnswerEdge:
        """Publishes the token with another account's thumbprint on the real edge."""

        def add_challenge(self, token: str, key_authorization: str) -> None:
            edge_driver.add_challenge(token, f"{token}.not-this-account-thumbprint")

        def remove_challenge(self, token: str) -> bool:
            return edge_driver.remove_challenge(token)

    client = AcmeClient(
        directory_url=pebble_server.directory_url,
        ca_bundle=str(pebble_server.ca_bundle_path),
        edge=WrongAnswerEdge(),  # type: ignore[arg-type]
    )

    with pytest.raises(PermanentError) as failed:
        client.issue_certificate(
            names=[hostname], challenge="http-01", account_key_pem=account.key_pem
        )

    assert failed.value.code == "acme_validation_failed", failed.value.detail
    assert "unauthorized" in failed.value.detail
    assert _challenge_route_ids(caddy_server) == []


@pytest.fixture(scope="module")
def reusing_pebble(
    tmp_path_factory: pytest.TempPathFactory, knot_server: KnotServer, caddy_server: CaddyServer
) -> Iterator[PebbleServer]:
    """A second Pebble that reuses every valid authorization."""
    server = start_pebble(
        tmp_path_factory.mktemp("pebble-reuse"),
        knot=knot_server,
        caddy=caddy_server,
        extra_env={"PEBBLE_AUTHZREUSE": "100"},
    )
    yield server
    server.stop()


def test_valid_authorization_is_skipped(reusing_pebble, knot_server, edge_driver, hostname) -> None:
    client = AcmeClient(
        directory_url=reusing_pebble.directory_url,
        ca_bundle=str(reusing_pebble.ca_bundle_path),
        edge=edge_driver,
    )
    account = client.register_account()
    client.issue_certificate(names=[hostname], challenge="http-01", account_key_pem=account.key_pem)

    # Validation would now fail, so a second certificate proves the reused authorization.
    set_records(knot_server, hostname, "A", ["127.0.0.2"])
    again = client.issue_certificate(
        names=[hostname], challenge="http-01", account_key_pem=account.key_pem
    )

    _verify_chain(again.cert_pem, reusing_pebble.root_pem(), hostname)


def test_bad_nonces_become_transient(tmp_path_factory, knot_server, caddy_server) -> None:
    server = start_pebble(
        tmp_path_factory.mktemp("pebble-nonce"),
        knot=knot_server,
        caddy=caddy_server,
        extra_env={"PEBBLE_WFE_NONCEREJECT": "100"},
    )
    try:
        client = AcmeClient(
            directory_url=server.directory_url, ca_bundle=str(server.ca_bundle_path)
        )
        with pytest.raises(TransientError) as rejected:
            client.register_account()
    finally:
        server.stop()

    assert rejected.value.code == "acme_server_error"
    assert "badNonce" in rejected.value.message


def test_rate_limit_carries_retry_after() -> None:
    response = requests.Response()
    response.status_code = 429
    response.headers["Retry-After"] = "120"
    problem = messages.Error.with_code("rateLimited", detail="too many new orders recently")

    error = acme_error(problem, action="create the order", response=response)

    assert isinstance(error, TransientError)
    assert error.code == "acme_rate_limited"
    assert error.retry_after == 120
    assert "too many new orders recently" in error.message
    assert "Retry after 120 s" in error.message


def test_rejected_identifier_is_permanent() -> None:
    problem = messages.Error.with_code("rejectedIdentifier", detail="name is on a blocklist")

    error = acme_error(problem, action="create the order")

    assert isinstance(error, PermanentError)
    assert error.code == "acme_rejected"
    assert "name is on a blocklist" in error.message


def test_untrusted_ca_certificate_is_permanent(pebble_server, tmp_path: Path) -> None:
    other_ca = TestCertificateAuthority(tmp_path)
    client = AcmeClient(directory_url=pebble_server.directory_url, ca_bundle=str(other_ca.path))

    with pytest.raises(PermanentError) as untrusted:
        client.register_account()

    assert untrusted.value.code == "acme_tls_untrusted"
    assert "HOSTYARD_ACME_CA_BUNDLE" in untrusted.value.message


def test_unreachable_ca_is_transient() -> None:
    client = AcmeClient(directory_url=f"https://127.0.0.1:{free_port()}/dir", request_timeout=2)

    with pytest.raises(TransientError) as unreachable:
        client.register_account()

    assert unreachable.value.code == "acme_unreachable"
    assert "did not respond" in unreachable.value.message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"names": ["*.example.org"], "challenge": "http-01"}, "can only be validated with DNS-01"),
        ({"names": ["a.example.org"], "challenge": "tls-alpn-01"}, "Unsupported ACME challenge"),
        ({"names": [" ", ""], "challenge": "http-01"}, "No names to certify"),
        (
            {"names": ["a.example.org"], "challenge": "http-01", "account_key_pem": "junk"},
            "account key is not an unencrypted PEM private key",
        ),
        (
            {"names": ["a.example.org"], "challenge": "http-01", "key_pem": "junk"},
            "private key is not an unencrypted PEM key",
        ),
    ],
)
def test_invalid_request_rejected(acme_client, account, kwargs, message) -> None:
    arguments = {"account_key_pem": account.key_pem, **kwargs}

    with pytest.raises(PermanentError) as rejected:
        acme_client.issue_certificate(**arguments)

    assert message in rejected.value.message


def test_missing_solver_is_permanent(pebble_server, account) -> None:
    client = AcmeClient(
        directory_url=pebble_server.directory_url, ca_bundle=str(pebble_server.ca_bundle_path)
    )

    with pytest.raises(PermanentError) as http_missing:
        client.issue_certificate(
            names=["a.example.org"], challenge="http-01", account_key_pem=account.key_pem
        )
    with pytest.raises(PermanentError) as dns_missing:
        client.issue_certificate(
            names=["a.example.org"], challenge="dns-01", account_key_pem=account.key_pem
        )

    assert "needs an edge driver" in http_missing.value.message
    assert "needs a DNS driver" in dns_missing.value.message


def test_factory_reads_settings(edge_driver: CaddyEdgeDriver) -> None:
    settings_obj = SimpleNamespace(
        HOSTYARD_ACME_DIRECTORY_URL="https://127.0.0.1:14000/dir",
        HOSTYARD_ACME_CA_BUNDLE="/tmp/pebble.pem",
        HOSTYARD_ACME_CONTACT_EMAIL="ops@example.org",
        HOSTYARD_DNS_TTL=120,
    )

    client = build_acme_client(settings_obj, edge=edge_driver)

    assert client.directory_url == "https://127.0.0.1:14000/dir"
    assert client.ca_bundle == "/tmp/pebble.pem"
    assert client.contact_email == "ops@example.org"
    assert client.edge is edge_driver
    assert client.dns is None
    assert client.dns_ttl == 120
