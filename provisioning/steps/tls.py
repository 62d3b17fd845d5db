"""TLS steps: the certificate that covers the site, and an HTTPS check through the edge."""

import http.client
import socket
import ssl
from typing import Any

from cryptography import x509
from django.conf import settings

from hosting.models import DomainStatus
from provisioning import certificates
from provisioning.drivers import registry
from provisioning.engine.steps import SkipStep, StepContext, step
from provisioning.errors import TransientError
from provisioning.steps.edge import NO_EDGE

HTTPS_TIMEOUT_SECONDS = 10


# TODO: publish_dns and issue_certificate (DNS-01 wildcard) do not depend on the
# container, so they could run concurrently with the container steps. The engine
# runs steps one after another.
@step("issue_certificate")
def issue_certificate(ctx: StepContext) -> dict[str, Any]:
    """Make sure a valid certificate covers the site's hostname and its active domains.

    Reuses a stored certificate with more than ``HOSTYARD_CERT_RENEW_DAYS`` left (the
    platform wildcard is shared by every site), else orders one after the pre-order
    checks. Raises ``TransientError`` while checks fail or the budget defers the
    order, ``PermanentError`` when the CA rejects validation.
    """
    if not registry.edge_enabled():
        raise SkipStep(NO_EDGE)
    site = ctx.site

    spec = certificates.site_certificate_spec(site)
    certificate = certificates.ensure_certificate(**spec, target=site.hostname)
    issued = [certificate]
    for domain in site.domains.filter(status=DomainStatus.ACTIVE):
        spec = certificates.domain_certificate_spec(domain)
        issued.append(certificates.ensure_certificate(**spec, target=site.hostname))

    return {
        "certificates": [
            {
                "id": str(c.uuid),
                "names": c.names,
                "not_after": c.not_after.isoformat() if c.not_after else None,
            }
            for c in issued
        ]
    }


@step("verify_https")
def verify_https(ctx: StepContext) -> dict[str, Any]:
    """GET ``https://<hostname>/`` through the edge with SNI, verifying the chain.

    Trusts ``HOSTYARD_HTTPS_VERIFY_CA_BUNDLE`` (or the system store). Any status
    below 500 passes, because the app decides what its front page returns. Raises
    ``TransientError`` for TLS errors, refused connections and 5xx responses.
    """
    if not registry.edge_enabled():
        raise SkipStep(NO_EDGE)
    hostname = ctx.site.hostname
    status, certificate = https_probe(hostname)
    if status >= 500:
        raise TransientError(
            f"https://{hostname}/ returned HTTP {status} through the edge: the route or the "
            "app is not ready yet.",
            code="https_check_failed",
        )
    return {
        "status": status,
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "issuer": certificate.issuer.rfc4514_string(),
    }


def https_probe(hostname: str, path: str = "/") -> tuple[int, x509.Certificate]:
    """Send one GET to the edge's HTTPS port as ``hostname``; return status and leaf certificate.

    Raises ``TransientError`` when the connection or the TLS verification fails.
    """
    address = settings.HOSTYARD_PUBLIC_IPV4
    port = settings.HOSTYARD_EDGE_HTTPS_PORT
    bundle = settings.HOSTYARD_HTTPS_VERIFY_CA_BUNDLE or None
    context = ssl.create_default_context(cafile=bundle)
    request = f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n"
    try:
        with (
            socket.create_connection((address, port), timeout=HTTPS_TIMEOUT_SECONDS) as raw,
            context.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            tls.sendall(request.encode())
            response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
            response.begin()
            response.read()
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        raise TransientError(
            f"HTTPS request to {hostname} through the edge at {address}:{port} failed: {exc}.",
            code="https_check_failed",
            detail=repr(exc),
        ) from exc
    assert der is not None
    return response.status, x509.load_der_x509_certificate(der)
