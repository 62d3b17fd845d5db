"""The DNS driver contract, run against both drivers: RFC 2136 on Knot, and Cloudflare.

Each backend reads records back on its own side (dnspython queries to Knot, the
stand-in's stored records for Cloudflare) and writes "foreign" records the way a
customer or another tool would: without Hostyard's marker.
"""

from collections.abc import Callable
from dataclasses import dataclass

import cloudflare
import pytest

from provisioning.drivers.dns.base import DnsDriver
from provisioning.errors import RecordConflictError
from tests.fixtures.dns import CLOUDFLARE_TOKEN, PLATFORM_ZONE, resolve_records, set_records


@dataclass
class Backend:
    driver: DnsDriver
    read: Callable[[str, str], list[str]]
    put_foreign: Callable[[str, str, str], None]


def _rfc2136_backend(request: pytest.FixtureRequest) -> Backend:
    knot = request.getfixturevalue("knot_server")

    def put_foreign(name: str, type: str, value: str) -> None:
        set_records(knot, name, type, [f'"{value}"' if type == "TXT" else value])

    return Backend(
        driver=request.getfixturevalue("rfc2136_driver"),
        read=lambda name, type: resolve_records(knot, name, type),
        put_foreign=put_foreign,
    )


def _cloudflare_backend(request: pytest.FixtureRequest) -> Backend:
    api = request.getfixturevalue("cloudflare_api")
    client = cloudflare.Cloudflare(api_token=CLOUDFLARE_TOKEN, base_url=api.base_url, max_retries=0)
    zone_id = client.zones.list(name=PLATFORM_ZONE).result[0].id

    def read(name: str, type: str) -> list[str]:
        records = api.state.zone_records(PLATFORM_ZONE)
        return sorted(r["content"] for r in records if (r["name"], r["type"]) == (name, type))

    def put_foreign(name: str, type: str, value: str) -> None:
        client.dns.records.create(zone_id=zone_id, name=name, type=type, content=value, ttl=300)

    return Backend(
        driver=request.getfixturevalue("cloudflare_driver"), read=read, put_foreign=put_foreign
    )


@pytest.fixture(params=["rfc2136", "cloudflare"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "rfc2136":
        return _rfc2136_backend(request)
    return _cloudflare_backend(request)


@pytest.fixture
def name(unique_label: str) -> str:
    return f"{unique_label}.{PLATFORM_ZONE}"


def test_create_reads_back(backend, name):
    record = backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert record.managed
    assert record.name == name
    assert record.value == "127.0.0.1"
    assert backend.read(name, "A") == ["127.0.0.1"]


def test_create_all_supported_types(backend, name):
    backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)
    backend.driver.ensure_record(name=name, type="AAAA", value="2001:DB8:0::1", ttl=300)
    backend.driver.ensure_record(name=f"_acme-challenge.{name}", type="TXT", value="tok-1", ttl=60)

    assert backend.read(name, "A") == ["127.0.0.1"]
    assert backend.read(name, "AAAA") == ["2001:db8::1"]
    assert backend.read(f"_acme-challenge.{name}", "TXT") == ["tok-1"]


def test_recreate_is_idempotent(backend, name):
    first = backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)
    second = backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert first.value == second.value
    assert second.managed
    assert backend.read(name, "A") == ["127.0.0.1"]


def test_wrong_value_is_replaced(backend, name):
    backend.driver.ensure_record(name=name, type="A", value="192.0.2.10", ttl=300)

    record = backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert record.value == "127.0.0.1"
    assert backend.read(name, "A") == ["127.0.0.1"]


def test_txt_value_is_replaced(backend, name):
    txt_name = f"_acme-challenge.{name}"
    backend.driver.ensure_record(name=txt_name, type="TXT", value="old-token", ttl=60)

    backend.driver.ensure_record(name=txt_name, type="TXT", value="new-token", ttl=60)

    assert backend.read(txt_name, "TXT") == ["new-token"]


def test_unmanaged_record_conflicts(backend, name):
    backend.put_foreign(name, "A", "203.0.113.9")

    with pytest.raises(RecordConflictError) as excinfo:
        backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert "203.0.113.9" in excinfo.value.message
    assert name in excinfo.value.message
    assert backend.read(name, "A") == ["203.0.113.9"]


def test_unmanaged_same_value_succeeds(backend, name):
    backend.put_foreign(name, "A", "127.0.0.1")

    record = backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert record.value == "127.0.0.1"
    assert not record.managed
    assert backend.read(name, "A") == ["127.0.0.1"]


def test_unmanaged_other_type_untouched(backend, name):
    backend.put_foreign(name, "TXT", "customer-verification")

    backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert backend.read(name, "A") == ["127.0.0.1"]
    assert backend.read(name, "TXT") == ["customer-verification"]


def test_delete_removes_record(backend, name):
    backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    assert backend.driver.delete_record(name=name, type="A") is True
    assert backend.read(name, "A") == []
    assert backend.driver.delete_record(name=name, type="A") is False


def test_delete_keeps_unmanaged(backend, name):
    backend.put_foreign(name, "A", "203.0.113.9")

    assert backend.driver.delete_record(name=name, type="A") is False
    assert backend.read(name, "A") == ["203.0.113.9"]


def test_list_returns_only_managed(backend, unique_label):
    managed = {
        (f"www.{unique_label}.{PLATFORM_ZONE}", "A", "127.0.0.1"),
        (f"www.{unique_label}.{PLATFORM_ZONE}", "AAAA", "2001:db8::1"),
        (f"_acme-challenge.{unique_label}.{PLATFORM_ZONE}", "TXT", "token-value"),
        (f"{unique_label}.{PLATFORM_ZONE}", "A", "127.0.0.2"),
    }
    for record_name, type, value in managed:
        backend.driver.ensure_record(name=record_name, type=type, value=value, ttl=300)
    backend.put_foreign(f"other.{unique_label}.{PLATFORM_ZONE}", "A", "203.0.113.9")

    listed = [r for r in backend.driver.list_records() if unique_label in r.name]

    assert {(r.name, r.type, r.value) for r in listed} == managed
    assert all(r.managed for r in listed)
    assert len(listed) == len(managed)


def test_list_after_delete(backend, name):
    backend.driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)
    backend.driver.delete_record(name=name, type="A")

    assert [r for r in backend.driver.list_records() if r.name == name] == []
