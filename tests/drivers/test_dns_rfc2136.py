"""RFC 2136 driver against a real Knot server: keys, markers, errors, races."""

import socket
import threading
from collections.abc import Iterator

import pytest

from devstack.process import free_port
from provisioning.drivers.dns.rfc2136 import MARKER_LABEL, Rfc2136Driver
from provisioning.errors import PermanentError, TransientError
from tests.fixtures.dns import PLATFORM_ZONE, resolve_records, set_records

WRONG_SECRET = "c2VjcmV0LXRoYXQta25vdC1kb2VzLW5vdC1rbm93LTAxMjM0NTY3ODk="


def make_driver(knot_server, **overrides) -> Rfc2136Driver:
    options = {
        "server": knot_server.server,
        "zones": knot_server.zones,
        "tsig_name": knot_server.tsig_name,
        "tsig_secret": knot_server.tsig_secret,
        "tsig_algorithm": knot_server.tsig_algorithm,
    }
    options.update(overrides)
    return Rfc2136Driver(**options)


@pytest.fixture
def name(unique_label: str) -> str:
    return f"{unique_label}.{PLATFORM_ZONE}"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP listener on loopback that accepts connections and never replies."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_records_read_back_from_knot(rfc2136_driver, knot_server, name):
    rfc2136_driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=120)
    rfc2136_driver.ensure_record(name=name, type="AAAA", value="::1", ttl=120)

    assert resolve_records(knot_server, name, "A") == ["127.0.0.1"]
    assert resolve_records(knot_server, name, "AAAA") == ["::1"]
    assert resolve_records(knot_server, f"{MARKER_LABEL}.{name}", "TXT") == [
        "managed-by=hostyard type=A",
        "managed-by=hostyard type=AAAA",
    ]


def test_marker_removed_with_last_record(rfc2136_driver, knot_server, name):
    rfc2136_driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=120)
    rfc2136_driver.ensure_record(name=name, type="AAAA", value="::1", ttl=120)

    rfc2136_driver.delete_record(name=name, type="A")
    assert resolve_records(knot_server, f"{MARKER_LABEL}.{name}", "TXT") == [
        "managed-by=hostyard type=AAAA"
    ]

    rfc2136_driver.delete_record(name=name, type="AAAA")
    assert resolve_records(knot_server, f"{MARKER_LABEL}.{name}", "TXT") == []


def test_ttl_change_rewrites_record(rfc2136_driver, knot_server, name):
    rfc2136_driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=120)

    record = rfc2136_driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=600)

    listed = [r for r in rfc2136_driver.list_records() if r.name == name]
    assert record.ttl == 600
    assert [(r.value, r.ttl) for r in listed] == [("127.0.0.1", 600)]


def test_long_txt_value_round_trips(rfc2136_driver, knot_server, name):
    value = "v=" + "x" * 600

    rfc2136_driver.ensure_record(name=name, type="TXT", value=value, ttl=60)

    assert resolve_records(knot_server, name, "TXT") == [value]
    assert rfc2136_driver.ensure_record(name=name, type="TXT", value=value, ttl=60).managed


def test_wrong_secret_names_key(knot_server, name):
    driver = make_driver(knot_server, tsig_secret=WRONG_SECRET)

    with pytest.raises(PermanentError) as excinfo:
        driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert excinfo.value.code == "dns_key_rejected"
    assert f"'{knot_server.tsig_name}'" in excinfo.value.message
    assert "secret" in excinfo.value.message
    assert resolve_records(knot_server, name, "A") == []


def test_unknown_key_name_rejected(knot_server, name):
    driver = make_driver(knot_server, tsig_name="not-a-key")

    with pytest.raises(PermanentError) as excinfo:
        driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert excinfo.value.code == "dns_key_rejected"
    assert "'not-a-key'" in excinfo.value.message


def test_transfer_with_wrong_secret_rejected(knot_server):
    driver = make_driver(knot_server, tsig_secret=WRONG_SECRET)

    with pytest.raises(PermanentError) as excinfo:
        driver.list_records()

    assert excinfo.value.code == "dns_key_rejected"
    assert "transfer" in excinfo.value.message


def test_zone_not_served_is_permanent(knot_server):
    driver = make_driver(knot_server, zones=["unserved.test"])

    with pytest.raises(PermanentError) as excinfo:
        driver.ensure_record(name="www.unserved.test", type="A", value="127.0.0.1", ttl=300)

    assert "REFUSED" in excinfo.value.message
    assert "unserved.test" in excinfo.value.message


def test_name_outside_zones_rejected(rfc2136_driver):
    with pytest.raises(PermanentError) as excinfo:
        rfc2136_driver.ensure_record(name="www.elsewhere.test", type="A", value="1.2.3.4", ttl=1)

    assert excinfo.value.code == "dns_zone_not_managed"
    assert "www.elsewhere.test" in excinfo.value.message


def test_marker_names_reserved(rfc2136_driver):
    with pytest.raises(PermanentError) as excinfo:
        rfc2136_driver.ensure_record(
            name=f"{MARKER_LABEL}.www.{PLATFORM_ZONE}", type="TXT", value="x", ttl=60
        )

    assert excinfo.value.code == "dns_name_reserved"


def test_invalid_address_rejected(rfc2136_driver, name):
    with pytest.raises(PermanentError) as excinfo:
        rfc2136_driver.ensure_record(name=name, type="A", value="2001:db8::1", ttl=60)

    assert excinfo.value.code == "dns_value_invalid"
    assert "IPv4" in excinfo.value.message


def test_unsupported_type_rejected(rfc2136_driver, name):
    with pytest.raises(PermanentError) as excinfo:
        rfc2136_driver.ensure_record(name=name, type="MX", value="10 mail.example.org", ttl=60)

    assert excinfo.value.code == "dns_type_unsupported"


def test_cname_at_name_conflicts(rfc2136_driver, knot_server, name):
    set_records(knot_server, name, "CNAME", [f"elsewhere.{PLATFORM_ZONE}."])

    with pytest.raises(PermanentError) as excinfo:
        rfc2136_driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert excinfo.value.code == "dns_record_conflict"
    assert "CNAME" in excinfo.value.message


def test_silent_server_times_out(knot_server, silent_server, name):
    driver = make_driver(knot_server, server=silent_server, timeout=0.3)

    with pytest.raises(TransientError) as excinfo:
        driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert excinfo.value.code == "dns_timeout"
    assert "timed out" in excinfo.value.message


def test_closed_port_is_transient(knot_server, name):
    driver = make_driver(knot_server, server=f"127.0.0.1:{free_port()}")

    with pytest.raises(TransientError) as excinfo:
        driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert excinfo.value.code == "dns_unreachable"


def test_concurrent_writers_leave_one_record(knot_server, name):
    drivers = [make_driver(knot_server) for _ in range(6)]
    errors: list[BaseException] = []

    def publish(driver: Rfc2136Driver, value: str) -> None:
        try:
            driver.ensure_record(name=name, type="A", value=value, ttl=300)
        except TransientError as exc:  # a writer that lost every race may give up
            errors.append(exc)

    threads = [
        threading.Thread(target=publish, args=(driver, f"192.0.2.{index % 2 + 1}"))
        for index, driver in enumerate(drivers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    values = resolve_records(knot_server, name, "A")
    assert len(values) == 1
    assert values[0] in ("192.0.2.1", "192.0.2.2")
    assert resolve_records(knot_server, f"{MARKER_LABEL}.{name}", "TXT") == [
        "managed-by=hostyard type=A"
    ]
    assert all(isinstance(error, TransientError) for error in errors)
