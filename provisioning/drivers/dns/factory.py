"""Build the DNS driver that the settings select."""

from typing import Any

import structlog

from provisioning.drivers.dns.base import DnsDriver, DnsRecord
from provisioning.drivers.dns.cloudflare import CloudflareDriver
from provisioning.drivers.dns.rfc2136 import Rfc2136Driver
from provisioning.errors import PermanentError

log = structlog.get_logger(__name__)

DRIVER_NAMES = ("rfc2136", "cloudflare", "none")


class NoDnsDriver:
    """The driver for ``HOSTYARD_DNS_DRIVER=none``: publishes nothing and logs that it did not.

    ``ensure_record`` returns the requested record with ``managed=False`` so callers
    can tell nothing was published; ``delete_record`` returns False and
    ``list_records`` an empty list.
    """

    def ensure_record(self, *, name: str, type: str, value: str, ttl: int) -> DnsRecord:
        log.info("dns.record_not_published", driver="none", name=name, type=type, value=value)
        return DnsRecord(name=name, type=type, value=value, ttl=ttl, managed=False)

    def delete_record(self, *, name: str, type: str) -> bool:
        log.info("dns.record_not_deleted", driver="none", name=name, type=type)
        return False

    def list_records(self) -> list[DnsRecord]:
        return []


def build_dns_driver(settings_obj: Any) -> DnsDriver:
    """Return the DNS driver named by ``settings_obj.HOSTYARD_DNS_DRIVER``.

    ``settings_obj`` is ``django.conf.settings`` or any object with the same
    attributes. Raises ``PermanentError`` for an unknown driver name or a driver
    missing its credentials.
    """
    name = str(settings_obj.HOSTYARD_DNS_DRIVER).strip().lower()
    if name == "none":
        return NoDnsDriver()

    if name == "rfc2136":
        secret = settings_obj.HOSTYARD_RFC2136_TSIG_SECRET
        if not secret:
            raise PermanentError(
                "The rfc2136 DNS driver has no TSIG secret: set HOSTYARD_RFC2136_TSIG_SECRET "
                "(keymgr -t NAME hmac-sha256 prints one).",
                code="dns_not_configured",
            )
        zones = [zone.strip() for zone in str(settings_obj.HOSTYARD_RFC2136_ZONE).split(",")]
        zones = [zone for zone in zones if zone]
        return Rfc2136Driver(
            server=settings_obj.HOSTYARD_RFC2136_SERVER,
            zones=zones,
            tsig_name=settings_obj.HOSTYARD_RFC2136_TSIG_NAME,
            tsig_secret=secret,
            tsig_algorithm=settings_obj.HOSTYARD_RFC2136_TSIG_ALGORITHM,
        )

    if name == "cloudflare":
        return CloudflareDriver(
            api_token=settings_obj.CLOUDFLARE_API_TOKEN,
            base_url=settings_obj.HOSTYARD_CLOUDFLARE_BASE_URL,
            zone=settings_obj.HOSTYARD_CLOUDFLARE_ZONE,
            proxied=settings_obj.HOSTYARD_CLOUDFLARE_PROXIED,
        )

    raise PermanentError(
        f"HOSTYARD_DNS_DRIVER is {name!r}: use one of {', '.join(DRIVER_NAMES)}.",
        code="dns_not_configured",
    )
