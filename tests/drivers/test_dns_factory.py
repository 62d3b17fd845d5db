"""Choosing the DNS driver from settings."""

from types import SimpleNamespace

import pytest

from provisioning.drivers.dns.cloudflare import CloudflareDriver
from provisioning.drivers.dns.factory import NoDnsDriver, build_dns_driver
from provisioning.drivers.dns.rfc2136 import Rfc2136Driver
from provisioning.errors import PermanentError

SETTINGS = {
    "HOSTYARD_DNS_DRIVER": "rfc2136",
    "HOSTYARD_RFC2136_SERVER": "127.0.0.1:5353",
    "HOSTYARD_RFC2136_ZONE": "sites.hostyard.test, example.org",
    "HOSTYARD_RFC2136_TSIG_NAME": "hostyard",
    "HOSTYARD_RFC2136_TSIG_SECRET": "c2VjcmV0",
    "HOSTYARD_RFC2136_TSIG_ALGORITHM": "hmac-sha256",
    "CLOUDFLARE_API_TOKEN": "token",
    "HOSTYARD_CLOUDFLARE_BASE_URL": "http://127.0.0.1:9/client/v4",
    "HOSTYARD_CLOUDFLARE_ZONE": "sites.hostyard.test",
    "HOSTYARD_CLOUDFLARE_PROXIED": True,
}


def settings(**overrides):
    return SimpleNamespace(**{**SETTINGS, **overrides})


def test_rfc2136_selected():
    driver = build_dns_driver(settings())

    assert isinstance(driver, Rfc2136Driver)
    assert driver.zones == ("sites.hostyard.test", "example.org")
    assert driver.port == 5353


def test_cloudflare_selected():
    driver = build_dns_driver(settings(HOSTYARD_DNS_DRIVER="cloudflare"))

    assert isinstance(driver, CloudflareDriver)
    assert driver.proxied is True
    assert "token" not in repr(driver)


def test_none_publishes_nothing():
    driver = build_dns_driver(settings(HOSTYARD_DNS_DRIVER="none"))

    record = driver.ensure_record(name="www.example.org", type="A", value="127.0.0.1", ttl=60)

    assert isinstance(driver, NoDnsDriver)
    assert not record.managed
    assert driver.delete_record(name="www.example.org", type="A") is False
    assert driver.list_records() == []


def test_missing_tsig_secret_rejected():
    with pytest.raises(PermanentError) as excinfo:
        build_dns_driver(settings(HOSTYARD_RFC2136_TSIG_SECRET=""))

    assert "HOSTYARD_RFC2136_TSIG_SECRET" in excinfo.value.message


def test_missing_cloudflare_token_rejected():
    with pytest.raises(PermanentError) as excinfo:
        build_dns_driver(settings(HOSTYARD_DNS_DRIVER="cloudflare", CLOUDFLARE_API_TOKEN=""))

    assert "CLOUDFLARE_API_TOKEN" in excinfo.value.message


def test_unknown_driver_rejected():
    with pytest.raises(PermanentError) as excinfo:
        build_dns_driver(settings(HOSTYARD_DNS_DRIVER="route53"))

    assert "'route53'" in excinfo.value.message
    assert "rfc2136, cloudflare, none" in excinfo.value.message
