"""The edge driver interface: routes from hostnames to sites, TLS certificates, HTTP-01 responses.

The edge proxy terminates TLS for every site and forwards requests to the site's
container. Every call is idempotent and keyed by the caller's ids (site id,
certificate id, ACME token), so a provisioning step can repeat it after a crash and
leave exactly one route or certificate. A call changes only the object it names, so
a bad request for one site never touches another site's route.

Drivers raise ``TransientError`` when the proxy is unreachable or fails on its side,
and ``PermanentError`` for input or configuration the proxy rejects.
"""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EdgeRoute:
    """One site's routing as the proxy stores it."""

    site_id: str
    hostnames: tuple[str, ...]
    upstream: str  # "host:port", or "" when only the suspended page is configured
    suspended: bool


class EdgeDriver(Protocol):
    def ensure_route(self, *, site_id: str, hostnames: list[str], upstream: str) -> None:
        """Create or replace the route that sends ``hostnames`` to ``upstream`` ("ip:port")."""
        ...

    def set_suspended(self, *, site_id: str, hostnames: list[str], suspended: bool) -> None:
        """Serve a 503 "This site is suspended" page for ``hostnames``, or stop serving it."""
        ...

    def remove_route(self, site_id: str) -> bool:
        """Remove the site's route and suspended page; return False if neither existed."""
        ...

    def list_routes(self) -> list[EdgeRoute]:
        """List every site route in one call to the proxy (for the reconciler)."""
        ...

    def load_certificate(self, *, cert_id: str, cert_pem: str, key_pem: str) -> None:
        """Create or replace the certificate ``cert_id``; TLS picks it by SNI from its names."""
        ...

    def remove_certificate(self, cert_id: str) -> bool:
        """Remove the certificate ``cert_id``; return False if it was not loaded."""
        ...

    def list_certificates(self) -> list[str]:
        """List the ids of the loaded certificates in one call to the proxy."""
        ...

    def add_challenge(self, token: str, key_authorization: str) -> None:
        """Serve the key authorization at ``GET /.well-known/acme-challenge/<token>`` on HTTP."""
        ...

    def remove_challenge(self, token: str) -> bool:
        """Stop serving the challenge ``token``; return False if it was not published."""
        ...


class NullEdgeDriver:
    """An edge driver that configures nothing, for deployments where routing is managed elsewhere.

    Every change succeeds without effect and every listing is empty. HTTP-01
    validation cannot work with it, because no challenge is ever served.
    """

    def ensure_route(self, *, site_id: str, hostnames: list[str], upstream: str) -> None:
        return None

    def set_suspended(self, *, site_id: str, hostnames: list[str], suspended: bool) -> None:
        return None

    def remove_route(self, site_id: str) -> bool:
        return False

    def list_routes(self) -> list[EdgeRoute]:
        return []

    def load_certificate(self, *, cert_id: str, cert_pem: str, key_pem: str) -> None:
        return None

    def remove_certificate(self, cert_id: str) -> bool:
        return False

    def list_certificates(self) -> list[str]:
        return []

    def add_challenge(self, token: str, key_authorization: str) -> None:
        return None

    def remove_challenge(self, token: str) -> bool:
        return False
