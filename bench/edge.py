"""Knot, Pebble and Caddy for the benchmarks, started only when the create operation uses them.

They start when ``KINDS["create"]`` has a DNS, certificate or route step. With a
``configure_route`` step, a site is probed over HTTPS through Caddy, and its
certificate is verified against the Pebble root of this run. Without one, a site
is probed over plain HTTP at its container address.
"""

import base64
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

from bench.harness import free_port

# Knot serves this zone by default; platform hostnames are <label>.<zone>.
PLATFORM_ZONE = "sites.hostyard.test"
# Steps that need the local DNS server, ACME server and edge proxy.
EDGE_STEPS = frozenset({"publish_dns", "issue_certificate", "configure_route", "verify_https"})


def create_steps() -> list[str]:
    from provisioning.engine.kinds import KINDS
    from provisioning.models import OperationKind

    return list(KINDS[OperationKind.CREATE].steps)


@dataclass
class EdgeStack:
    """Knot, Pebble and Caddy on free loopback ports, or nothing when ``enabled`` is False."""

    enabled: bool
    state_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-edge-")))
    servers: list[Any] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    https_port: int = 0
    root_path: Path | None = None

    @classmethod
    def for_steps(cls, steps: list[str]) -> "EdgeStack":
        return cls(enabled=bool(EDGE_STEPS.intersection(steps)))

    @property
    def routes_https(self) -> bool:
        return self.enabled and "configure_route" in create_steps()

    def start(self) -> None:
        """Start the three servers and point this process's settings at them."""
        if not self.enabled:
            return
        from devstack.caddy import CaddyServer
        from devstack.knot import KnotServer
        from devstack.pebble import PebbleServer

        knot = KnotServer(self.state_dir / "knot", port=free_port())
        caddy = CaddyServer(
            self.state_dir / "caddy",
            admin_port=free_port(),
            http_port=free_port(),
            https_port=free_port(),
        )
        pebble = PebbleServer(
            self.state_dir / "pebble",
            port=free_port(),
            management_port=free_port(),
            http_port=caddy.http_port,
            tls_port=caddy.https_port,
            dns_server=knot.server,
        )
        for server in (knot, pebble, caddy):
            server.start()
            self.servers.append(server)

        self.https_port = caddy.https_port
        self.root_path = self.state_dir / "pebble-root.pem"
        self.root_path.write_text(pebble.root_pem())
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        self.variables = {
            **knot.env(),
            **pebble.env(),
            **caddy.env(),
            "HOSTYARD_PLATFORM_DOMAIN": PLATFORM_ZONE,
            "HOSTYARD_RFC2136_ZONE": PLATFORM_ZONE,
            "HOSTYARD_PUBLIC_IPV4": "127.0.0.1",
            "HOSTYARD_PUBLIC_IPV6": "",
            "HOSTYARD_DNS_DRIVER": "rfc2136",
            "HOSTYARD_EDGE_DRIVER": "caddy",
            "HOSTYARD_ACME_PLATFORM_WILDCARD": "true",
            "HOSTYARD_HTTPS_VERIFY_CA_BUNDLE": str(self.root_path.resolve()),
            "HOSTYARD_ENCRYPTION_KEY": os.environ.get("HOSTYARD_ENCRYPTION_KEY", key),
        }
        _apply_to_settings(self.variables)

    def stop(self) -> None:
        """Stop the servers this stack started and remove their state folder."""
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return dict(self.variables)

    def __enter__(self) -> "EdgeStack":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def probe(self, *, hostname: str, address: str, port: int) -> bool:
        """Return True if GET / returns 200 at the address customers would use."""
        if self.routes_https:
            return _https_ok(hostname, self.https_port, self.root_path)
        if not address:
            return False
        try:
            return requests.get(f"http://{address}:{port}/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def describe(self) -> str:
        if self.routes_https:
            return "HTTPS through Caddy (certificate from Pebble, record in Knot)"
        return "plain HTTP to the container address (no configure_route step yet)"


def _apply_to_settings(variables: dict[str, str]) -> None:
    """Copy the servers' variables into this process's settings and rebuild the drivers."""
    from django.conf import settings

    from provisioning.drivers import registry

    for name, value in variables.items():
        os.environ[name] = value
        current = getattr(settings, name, None)
        if isinstance(current, bool):
            setattr(settings, name, value.lower() in ("1", "true", "yes"))
        elif isinstance(current, int):
            setattr(settings, name, int(value))
        elif isinstance(current, list):
            setattr(settings, name, [part for part in value.split(",") if part])
        else:
            setattr(settings, name, value)
    registry.reset()


def _https_ok(hostname: str, port: int, root_path: Path | None) -> bool:
    # Connect to the edge on loopback but send the site's name in SNI and Host,
    # and verify the certificate against this run's Pebble root.
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        port,
        server_hostname=hostname,
        assert_hostname=hostname,
        cert_reqs="CERT_REQUIRED",
        ca_certs=str(root_path),
        timeout=2.0,
        retries=False,
    )
    try:
        return pool.request("GET", "/", headers={"Host": hostname}).status == 200
    except urllib3.exceptions.HTTPError:
        return False
    finally:
        pool.close()
