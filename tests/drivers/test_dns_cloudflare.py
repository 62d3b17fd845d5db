"""Cloudflare driver against the v4 API stand-in: rate limits, lost replies, errors."""

from http import HTTPStatus

import cloudflare
import pytest

from provisioning.drivers.dns.cloudflare import MANAGED_COMMENT, CloudflareDriver
from provisioning.errors import PermanentError, TransientError
from tests.fixtures.dns import CLOUDFLARE_TOKEN, PLATFORM_ZONE

BURST_RECORDS = 300


def make_driver(api, **overrides) -> CloudflareDriver:
    options = {
        "api_token": CLOUDFLARE_TOKEN,
        "base_url": api.base_url,
        "zone": PLATFORM_ZONE,
        "backoff_base": 0.01,
    }
    options.update(overrides)
    return CloudflareDriver(**options)


def records_named(api, name):
    return [r for r in api.state.zone_records(PLATFORM_ZONE) if r["name"] == name]


def test_rate_limit_burst_creates_all(cloudflare_api):
    waits: list[float] = []
    driver = make_driver(cloudflare_api, max_attempts=8, sleep=waits.append)
    cloudflare_api.state.set_rate_limit(0.1, retry_after="0", seed=7)

    for index in range(BURST_RECORDS):
        driver.ensure_record(
            name=f"site{index}.{PLATFORM_ZONE}", type="A", value="127.0.0.1", ttl=300
        )

    records = cloudflare_api.state.zone_records(PLATFORM_ZONE)
    requests = cloudflare_api.state.requests
    limited = [i for i, entry in enumerate(requests) if entry.status == 429]
    assert len(records) == BURST_RECORDS
    assert {r["name"] for r in records} == {f"site{i}.{PLATFORM_ZONE}" for i in range(300)}
    assert len(limited) >= BURST_RECORDS // 10
    assert waits == [0.0] * len(limited)
    for index in limited:
        retried, limited_entry = requests[index + 1], requests[index]
        assert (retried.method, retried.path, retried.query) == (
            limited_entry.method,
            limited_entry.path,
            limited_entry.query,
        )


def test_rate_limit_exhaustion_is_transient(cloudflare_api):
    waits: list[float] = []
    driver = make_driver(cloudflare_api, max_attempts=3, sleep=waits.append)
    cloudflare_api.state.set_rate_limit(1.0, retry_after="0.25")

    with pytest.raises(TransientError) as excinfo:
        driver.ensure_record(name=f"www.{PLATFORM_ZONE}", type="A", value="127.0.0.1", ttl=300)

    assert excinfo.value.retry_after == 0.25
    assert excinfo.value.code == "dns_rate_limited"
    assert "3 attempts" in excinfo.value.message
    assert waits == [0.25, 0.25]
    assert cloudflare_api.state.rate_limited_count() == 3


def test_missing_retry_after_backs_off(cloudflare_api):
    waits: list[float] = []
    driver = make_driver(cloudflare_api, max_attempts=4, backoff_base=0.5, sleep=waits.append)
    cloudflare_api.state.set_rate_limit(1.0, retry_after="")

    with pytest.raises(TransientError):
        driver.list_records()

    assert waits == [0.5, 1.0, 2.0]


def test_lost_create_reply_is_success(cloudflare_api):
    name = f"lost.{PLATFORM_ZONE}"
    driver = make_driver(cloudflare_api)
    cloudflare_api.state.drop_create_responses = 1

    record = driver.ensure_record(name=name, type="A", value="127.0.0.1", ttl=300)

    creates = [e for e in cloudflare_api.state.requests if e.method == "POST"]
    assert record.managed
    assert [e.status for e in creates] == [HTTPStatus.OK, HTTPStatus.BAD_REQUEST]
    assert len(records_named(cloudflare_api, name)) == 1


def test_identical_record_answer_code(cloudflare_api):
    client = cloudflare.Cloudflare(
        api_token=CLOUDFLARE_TOKEN, base_url=cloudflare_api.base_url, max_retries=0
    )
    zone_id = client.zones.list(name=PLATFORM_ZONE).result[0].id
    options = {"zone_id": zone_id, "name": f"dup.{PLATFORM_ZONE}", "type": "A", "ttl": 300}
    client.dns.records.create(content="127.0.0.1", **options)

    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        client.dns.records.create(content="127.0.0.1", **options)

    assert [error.code for error in excinfo.value.errors] == [81058]
    assert excinfo.value.errors[0].message == "An identical record already exists."


def test_bad_token_is_readable(cloudflare_api):
    driver = make_driver(cloudflare_api, api_token="wrong-token")

    with pytest.raises(PermanentError) as excinfo:
        driver.ensure_record(name=f"www.{PLATFORM_ZONE}", type="A", value="127.0.0.1", ttl=300)

    assert excinfo.value.code == "dns_auth_failed"
    assert "rejected the API token" in excinfo.value.message
    assert "10000: Authentication error" in excinfo.value.message
    assert "wrong-token" not in excinfo.value.message


def test_unknown_zone_is_permanent(cloudflare_api):
    driver = make_driver(cloudflare_api, zone="missing.test")

    with pytest.raises(PermanentError) as excinfo:
        driver.ensure_record(name="www.missing.test", type="A", value="127.0.0.1", ttl=300)

    assert excinfo.value.code == "dns_zone_not_found"
    assert "missing.test" in excinfo.value.message


def test_missing_base_url_rejected():
    with pytest.raises(PermanentError) as excinfo:
        CloudflareDriver(api_token=CLOUDFLARE_TOKEN, base_url="", zone=PLATFORM_ZONE)

    assert "HOSTYARD_CLOUDFLARE_BASE_URL" in excinfo.value.message


def test_proxied_set_from_constructor(cloudflare_api):
    driver = make_driver(cloudflare_api, proxied=True)

    driver.ensure_record(name=f"p.{PLATFORM_ZONE}", type="A", value="127.0.0.1", ttl=300)
    driver.ensure_record(name=f"p.{PLATFORM_ZONE}", type="TXT", value="token", ttl=300)

    by_type = {r["type"]: r for r in records_named(cloudflare_api, f"p.{PLATFORM_ZONE}")}
    assert by_type["A"]["proxied"] is True
    assert by_type["A"]["ttl"] == 1
    assert by_type["TXT"]["proxied"] is False
    assert by_type["TXT"]["ttl"] == 300


def test_dns_only_sent_explicitly(cloudflare_api):
    driver = make_driver(cloudflare_api, proxied=False)

    driver.ensure_record(name=f"d.{PLATFORM_ZONE}", type="A", value="127.0.0.1", ttl=300)

    create = next(e for e in cloudflare_api.state.requests if e.method == "POST")
    assert create.body["proxied"] is False
    assert create.body["comment"] == MANAGED_COMMENT


def test_proxied_change_updates_record(cloudflare_api):
    make_driver(cloudflare_api, proxied=False).ensure_record(
        name=f"c.{PLATFORM_ZONE}", type="A", value="127.0.0.1", ttl=300
    )

    make_driver(cloudflare_api, proxied=True).ensure_record(
        name=f"c.{PLATFORM_ZONE}", type="A", value="127.0.0.1", ttl=300
    )

    records = records_named(cloudflare_api, f"c.{PLATFORM_ZONE}")
    assert len(records) == 1
    assert records[0]["proxied"] is True


def test_managed_duplicates_collapsed(cloudflare_api):
    name = f"twice.{PLATFORM_ZONE}"
    client = cloudflare.Cloudflare(
        api_token=CLOUDFLARE_TOKEN, base_url=cloudflare_api.base_url, max_retries=0
    )
    zone_id = client.zones.list(name=PLATFORM_ZONE).result[0].id
    for value in ("192.0.2.1", "192.0.2.2"):
        client.dns.records.create(
            zone_id=zone_id, name=name, type="A", content=value, ttl=300, comment=MANAGED_COMMENT
        )

    make_driver(cloudflare_api).ensure_record(name=name, type="A", value="192.0.2.2", ttl=300)

    assert [r["content"] for r in records_named(cloudflare_api, name)] == ["192.0.2.2"]


def test_list_spans_pages(cloudflare_api):
    driver = make_driver(cloudflare_api, per_page=7)
    for index in range(20):
        driver.ensure_record(name=f"l{index}.{PLATFORM_ZONE}", type="A", value="127.0.0.1", ttl=300)
    pages = [
        e for e in cloudflare_api.state.requests if e.method == "GET" and "per_page=7" in e.query
    ]
    before = len(pages)

    listed = driver.list_records()

    assert len(listed) == 20
    assert all(r.managed and r.record_id for r in listed)
    pages = [
        e for e in cloudflare_api.state.requests if e.method == "GET" and "per_page=7" in e.query
    ]
    assert len(pages) - before == 3


def test_sdk_pagination_stops(cloudflare_api):
    driver = make_driver(cloudflare_api)
    for index in range(12):
        driver.ensure_record(name=f"s{index}.{PLATFORM_ZONE}", type="A", value="127.0.0.1", ttl=300)
    client = cloudflare.Cloudflare(
        api_token=CLOUDFLARE_TOKEN, base_url=cloudflare_api.base_url, max_retries=0
    )
    zone_id = client.zones.list(name=PLATFORM_ZONE).result[0].id

    records = list(client.dns.records.list(zone_id=zone_id, per_page=5))

    assert len(records) == 12
