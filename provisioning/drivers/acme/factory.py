"""Build the ACME client that the settings select."""

from typing import Any

from provisioning.drivers.acme.client import AcmeClient
from provisioning.drivers.dns.base import DnsDriver
from provisioning.drivers.edge.base import EdgeDriver


def build_acme_client(
    settings_obj: Any, *, edge: EdgeDriver | None = None, dns: DnsDriver | None = None
) -> AcmeClient:
    """Return an ``AcmeClient`` for ``HOSTYARD_ACME_DIRECTORY_URL``.

    ``settings_obj`` is ``django.conf.settings`` or any object with the same
    attributes. ``edge`` serves HTTP-01 and ``dns`` publishes DNS-01 responses.
    """
    return AcmeClient(
        directory_url=settings_obj.HOSTYARD_ACME_DIRECTORY_URL,
        ca_bundle=settings_obj.HOSTYARD_ACME_CA_BUNDLE,
        contact_email=settings_obj.HOSTYARD_ACME_CONTACT_EMAIL,
        edge=edge,
        dns=dns,
        dns_ttl=int(getattr(settings_obj, "HOSTYARD_DNS_TTL", 60)),
    )
