"""A private Pebble ACME server on loopback for the quickstart and the tests.

Pebble (``pebble`` from Debian's package, 2.4) is Let's Encrypt's ACME test server.
Debian ships neither a certificate for Pebble's own HTTPS listener nor a usable
config, so ``start`` generates a self-signed certificate for ``localhost`` and
127.0.0.1 and writes the config. Both the ACME API and the management API listen on
127.0.0.1 only. Pebble resolves names through ``dns_server`` (the local Knot), never
the system resolver, and its HTTP-01 validation connects to ``http_port`` of the
address a name resolves to, which is the edge proxy's HTTP listener.

Pebble generates a new issuing root at every start: ``root_pem()`` fetches the
current one from the management API.
"""

import datetime
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

import requests
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.process import ManagedProcess

log = structlog.get_logger(__name__)


@dataclass
class PebbleServer:
    """One ``pebble`` process with its config and listener certificate under ``state_dir``."""

    state_dir: Path
    port: int = 14000
    management_port: int = 15000
    http_port: int = 8080  # where Pebble's VA connects for HTTP-01: the edge's HTTP port
    tls_port: int = 8443  # where Pebble's VA connects for TLS-ALPN-01
    dns_server: str = "127.0.0.1:5353"
    # Extra PEBBLE_* variables, e.g. {"PEBBLE_AUTHZREUSE": "100"}; they override the defaults.
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def ca_bundle_path(self) -> Path:
        """The self-signed certificate that verifies Pebble's own HTTPS listeners."""
        return self.state_dir / "listener-cert.pem"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "pebble.json"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            name="pebble",
            argv=["pebble", "-config", str(self.config_path), "-dnsserver", self.dns_server],
            state_dir=self.state_dir,
            env={
                # Validate at once instead of after Pebble's random 0-15 s sleep.
                "PEBBLE_VA_NOSLEEP": "1",
                # Pebble rejects 5% of valid nonces by default to test client retries.
                "PEBBLE_WFE_NONCEREJECT": "0",
                **self.extra_env,
            },
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start Pebble unless it already runs, and wait until its directory responds.

        The listener certificate is generated once and kept. Raises
        ``ServerStartError`` with Pebble's log tail if it does not come up.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        key_path = self.state_dir / "listener-key.pem"
        if not (self.ca_bundle_path.exists() and key_path.exists()):
            _write_listener_certificate(self.ca_bundle_path, key_path)
        self.config_path.write_text(json.dumps(self._config(key_path), indent=2))

        self.process.start(ready=self._directory_responds, timeout=timeout)
        log.info(
            "pebble.started",
            port=self.port,
            management_port=self.management_port,
            dns_server=self.dns_server,
        )

    def stop(self) -> None:
        """Stop the Pebble process this server started, or do nothing when it does not run."""
        self.process.stop()
        log.info("pebble.stopped", port=self.port)

    def root_pem(self) -> str:
        """Fetch the root that issues this run's certificates (it changes at every start)."""
        response = requests.get(
            f"https://127.0.0.1:{self.management_port}/roots/0",
            verify=str(self.ca_bundle_path),
            timeout=5,
        )
        response.raise_for_status()
        return response.text

    def env(self) -> dict[str, str]:
        """Environment variables that point Hostyard's settings at this server."""
        return {
            "HOSTYARD_ACME_DIRECTORY_URL": self.directory_url,
            "HOSTYARD_ACME_CA_BUNDLE": str(self.ca_bundle_path.resolve()),
        }

    def _config(self, key_path: Path) -> dict:
        return {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.ca_bundle_path.resolve()),
                "privateKey": str(key_path.resolve()),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }

    def _directory_responds(self) -> bool:
        try:
            response = requests.get(self.directory_url, verify=str(self.ca_bundle_path), timeout=1)
        except requests.RequestException:
            return False
        return response.ok


def _write_listener_certificate(cert_path: Path, key_path: Path) -> None:
    """Write a self-signed P-256 certificate for localhost and 127.0.0.1, valid one year."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hostyard devstack Pebble")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )

    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
