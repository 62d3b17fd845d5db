"""Domain checks against Knot, whose example.org zone serves as a customer's DNS."""

import socket
from collections.abc import Iterator

import pytest

from provisioning.domain_check import check_domain
from tests.fixtures.dns import PLATFORM_ZONE, set_records

EXPECTED_IPV4 = "127.0.0.1"
CA = "pebble.letsencrypt.org"


@pytest.fixture
def check(knot_server, unique_label):
    platform_hostname = f"{unique_label}.{PLATFORM_ZONE}"
    set_records(knot_server, platform_hostname, "A", [EXPECTED_IPV4])

    def run(domain: str, **overrides):
        options = {
            "expected_ipv4": EXPECTED_IPV4,
            "expected_ipv6": "",
            "platform_hostname": platform_hostname,
            "resolvers": [knot_server.server],
            "caa_identities": [CA],
        }
        options.update(overrides)
        return check_domain(domain, **options)

    run.platform_hostname = platform_hostname
    return run


@pytest.fixture
def apex(knot_server) -> Iterator[str]:
    """example.org's apex, with its A, AAAA and CAA records removed afterwards."""
    yield "example.org"
    for rdtype in ("A", "AAAA", "CAA"):
        set_records(knot_server, "example.org", rdtype, [])


@pytest.fixture
def customer(unique_label: str) -> str:
    """A customer domain of its own inside example.org, so tests do not share records."""
    return f"{unique_label}.example.org"


def test_apex_a_correct(check, knot_server, apex):
    set_records(knot_server, apex, "A", [EXPECTED_IPV4])

    result = check(apex)

    assert result.ok, result.reason
    assert result.found["a"] == [EXPECTED_IPV4]


def test_apex_a_elsewhere(check, knot_server, apex):
    set_records(knot_server, apex, "A", ["203.0.113.9"])

    result = check(apex)

    assert not result.ok
    assert "A record is 203.0.113.9, expected 127.0.0.1" in result.reason
    assert not result.retryable


def test_extra_a_record_rejected(check, knot_server, customer):
    set_records(knot_server, customer, "A", [EXPECTED_IPV4, "203.0.113.9"])

    result = check(customer)

    assert not result.ok
    assert "127.0.0.1, 203.0.113.9" in result.reason


def test_www_cname_to_platform(check, knot_server, customer):
    set_records(knot_server, f"www.{customer}", "CNAME", [check.platform_hostname + "."])

    result = check(f"www.{customer}")

    assert result.ok, result.reason
    assert result.found["cname"] == [check.platform_hostname]


def test_cname_elsewhere_names_address(check, knot_server, customer):
    set_records(knot_server, f"other.{customer}", "A", ["203.0.113.7"])
    set_records(knot_server, f"www.{customer}", "CNAME", [f"other.{customer}."])

    result = check(f"www.{customer}")

    assert not result.ok
    assert "resolves to 203.0.113.7" in result.reason
    assert check.platform_hostname in result.reason


def test_cname_chain_to_platform(check, knot_server, customer):
    set_records(knot_server, f"alias.{customer}", "CNAME", [check.platform_hostname + "."])
    set_records(knot_server, f"www.{customer}", "CNAME", [f"alias.{customer}."])

    result = check(f"www.{customer}")

    assert result.ok, result.reason
    assert result.found["cname"] == [f"alias.{customer}", check.platform_hostname]


def test_no_address_records(check, knot_server, customer):
    set_records(knot_server, customer, "TXT", ['"only text"'])

    result = check(customer)

    assert not result.ok
    assert "no A or AAAA record" in result.reason


def test_nxdomain_is_readable(check, customer):
    result = check(f"missing.{customer}")

    assert not result.ok
    assert "does not exist in DNS (NXDOMAIN)" in result.reason


def test_stray_aaaa_without_platform_ipv6(check, knot_server, customer):
    set_records(knot_server, customer, "A", [EXPECTED_IPV4])
    set_records(knot_server, customer, "AAAA", ["2001:db8::9"])

    result = check(customer)

    assert not result.ok
    assert "AAAA record is 2001:db8::9" in result.reason
    assert "no IPv6 address" in result.reason


def test_aaaa_matches_platform_ipv6(check, knot_server, customer):
    set_records(knot_server, customer, "A", [EXPECTED_IPV4])
    set_records(knot_server, customer, "AAAA", ["2001:db8::1"])

    result = check(customer, expected_ipv6="2001:DB8:0::1")

    assert result.ok, result.reason


def test_caa_at_parent_forbids(check, knot_server, customer):
    set_records(knot_server, customer, "CAA", ['0 issue "letsencrypt.org"'])
    set_records(knot_server, f"www.{customer}", "A", [EXPECTED_IPV4])

    result = check(f"www.{customer}")

    assert not result.ok
    assert f"CAA record at {customer} forbids {CA}" in result.reason
    assert result.found["caa"]["name"] == customer


def test_caa_allowing_passes(check, knot_server, customer):
    set_records(knot_server, customer, "CAA", [f'0 issue "{CA}; accounturi=x"'])
    set_records(knot_server, customer, "A", [EXPECTED_IPV4])

    result = check(customer)

    assert result.ok, result.reason


def test_caa_empty_issue_forbids_all(check, knot_server, customer):
    set_records(knot_server, customer, "CAA", ['0 issue ";"'])
    set_records(knot_server, customer, "A", [EXPECTED_IPV4])

    result = check(customer)

    assert not result.ok
    assert "forbids" in result.reason
    assert "no CA" in result.reason


def test_caa_nearest_set_wins(check, knot_server, customer):
    set_records(knot_server, customer, "CAA", ['0 issue "letsencrypt.org"'])
    set_records(knot_server, f"www.{customer}", "CAA", [f'0 issue "{CA}"'])
    set_records(knot_server, f"www.{customer}", "A", [EXPECTED_IPV4])

    result = check(f"www.{customer}")

    assert result.ok, result.reason
    assert result.found["caa"]["name"] == f"www.{customer}"


def test_caa_iodef_only_allows(check, knot_server, customer):
    set_records(knot_server, customer, "CAA", ['0 iodef "mailto:security@example.org"'])
    set_records(knot_server, customer, "A", [EXPECTED_IPV4])

    assert check(customer).ok


def test_caa_unknown_critical_forbids(check, knot_server, customer):
    set_records(knot_server, customer, "CAA", ['128 future "x"', f'0 issue "{CA}"'])
    set_records(knot_server, customer, "A", [EXPECTED_IPV4])

    result = check(customer)

    assert not result.ok
    assert "unknown critical property 'future'" in result.reason


def test_silent_resolver_times_out(check, customer):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{silent.getsockname()[1]}"

        result = check(customer, resolvers=[address], timeout=0.2)

    assert not result.ok
    assert result.retryable
    assert "timed out" in result.reason


def test_refusing_resolver_is_readable(check):
    result = check("www.not-served-here.test")

    assert not result.ok
    assert result.retryable
    assert "REFUSED" in result.reason


def test_caa_climb_stops_at_unserved_parent(check, knot_server, customer):
    set_records(knot_server, customer, "A", [EXPECTED_IPV4])

    result = check(customer)

    assert result.ok, result.reason
    assert result.found["caa_unchecked_from"] == "org"
