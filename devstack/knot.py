"""A private Knot DNS server on loopback for the quickstart and the tests.

Knot (``knotd`` from Debian's ``knot`` package) serves the platform zone and a few
zones that stand in for customers' DNS. Every zone accepts RFC 2136 updates and
zone transfers signed with one TSIG key, so tests can set a customer's records the
same way the RFC 2136 driver sets the platform's. The server runs as the current
user with its configuration, run directory, zone files and databases under
``state_dir``, and listens on 127.0.0.1 only. It sends no NOTIFY and has no
secondaries configured, so it makes no outgoing traffic.
"""

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import structlog

from devstack.process import ManagedProcess, ServerStartError

log = structlog.get_logger(__name__)

DEFAULT_ZONES = ("sites.hostyard.test", "example.org", "example.com", "example.net")
TSIG_KEY_NAME = "hostyard"
TSIG_ALGORITHM = "hmac-sha256"

_KEY_LINE = re.compile(r"^#\s*(?P<algorithm>[\w-]+):(?P<name>[\w.-]+):(?P<secret>\S+)\s*$")


@dataclass
class KnotServer:
    """One ``knotd`` process with its files under ``state_dir``, listening on 127.0.0.1."""

    state_dir: Path
    port: int = 5353
    zones: tuple[str, ...] = DEFAULT_ZONES
    _key: tuple[str, str, str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.zones = tuple(zone.lower().rstrip(".") for zone in self.zones)

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            name="knot",
            argv=["knotd", "-c", str(self.config_path)],
            state_dir=self.state_dir,
        )

    @property
    def config_path(self) -> Path:
        return self.state_dir / "knot.conf"

    @property
    def key_path(self) -> Path:
        return self.state_dir / "tsig.key"

    @property
    def server(self) -> str:
        """The server's address as ``host:port``."""
        return f"127.0.0.1:{self.port}"

    @property
    def tsig_name(self) -> str:
        return self._read_key()[0]

    @property
    def tsig_algorithm(self) -> str:
        return self._read_key()[1]

    @property
    def tsig_secret(self) -> str:
        return self._read_key()[2]

    def start(self, timeout: float = 30.0) -> None:
        """Start Knot unless it already runs, and wait until every zone returns its SOA record.

        Idempotent: the TSIG key is generated once and kept. Zone files are written
        only when missing, so records added by updates survive a restart. Raises
        ``ServerStartError`` with Knot's log tail if it does not come up.
        """
        for folder in ("run", "storage", "zones"):
            (self.state_dir / folder).mkdir(parents=True, exist_ok=True)
        self._ensure_key()
        self.config_path.write_text(self._render_config())
        for zone in self.zones:
            zone_file = self.state_dir / "zones" / f"{zone}.zone"
            if not zone_file.exists():
                zone_file.write_text(_render_zone(zone))

        self.process.start(ready=self._answers_soa, timeout=timeout)
        log.info("knot.started", port=self.port, zones=list(self.zones))

    def stop(self) -> None:
        """Stop the Knot process this server started, or do nothing when it does not run."""
        self.process.stop()
        log.info("knot.stopped", port=self.port)

    def env(self) -> dict[str, str]:
        """Environment variables that point Hostyard's settings at this server."""
        return {
            "HOSTYARD_RFC2136_SERVER": self.server,
            "HOSTYARD_RFC2136_TSIG_NAME": self.tsig_name,
            "HOSTYARD_RFC2136_TSIG_SECRET": self.tsig_secret,
            "HOSTYARD_RFC2136_TSIG_ALGORITHM": self.tsig_algorithm,
            "HOSTYARD_DOMAIN_CHECK_RESOLVERS": self.server,
        }

    def _ensure_key(self) -> None:
        if self.key_path.exists():
            return
        output = subprocess.run(  # noqa: S603 - fixed argv
            ["keymgr", "-t", TSIG_KEY_NAME, TSIG_ALGORITHM],  # noqa: S607 - keymgr from Debian's knot
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.key_path.write_text(output)
        self.key_path.chmod(0o600)
        self._key = None

    def _read_key(self) -> tuple[str, str, str]:
        if self._key is None:
            try:
                text = self.key_path.read_text()
            except FileNotFoundError:
                raise ServerStartError(
                    f"no TSIG key at {self.key_path}: call KnotServer.start() first"
                ) from None
            for line in text.splitlines():
                match = _KEY_LINE.match(line)
                if match:
                    self._key = (match["name"], match["algorithm"], match["secret"])
                    break
            else:
                raise ServerStartError(
                    f"{self.key_path} contains no keymgr key line: "
                    "delete it so start() makes a new key"
                )
        return self._key

    def _render_config(self) -> str:
        state = self.state_dir.resolve()
        name, algorithm, secret = self._read_key()
        zones = "\n".join(f"  - domain: {zone}" for zone in self.zones)
        return f"""\
# Written by devstack/knot.py on every start, so edits are overwritten.
server:
    rundir: "{state}/run"
    listen: 127.0.0.1@{self.port}

database:
    storage: "{state}/storage"

control:
    listen: "{state}/run/knot.sock"

log:
  - target: stdout
    any: info

key:
  - id: {name}
    algorithm: {algorithm}
    secret: {secret}

acl:
  - id: hostyard_key
    address: 127.0.0.0/8
    key: {name}
    action: [update, transfer]

template:
  - id: default
    storage: "{state}/zones"
    file: "%s.zone"
    acl: hostyard_key
    # Updates live in the journal because zone files are never rewritten.
    zonefile-sync: -1
    journal-content: changes
    semantic-checks: on

zone:
{zones}
"""

    def _answers_soa(self) -> bool:
        return all(_query_soa(zone, self.port) for zone in self.zones)


def _render_zone(zone: str) -> str:
    serial = int(time.time())
    return f"""\
$ORIGIN {zone}.
$TTL 300
@    SOA  ns1.{zone}. hostmaster.{zone}. {serial} 3600 600 86400 60
@    NS   ns1.{zone}.
ns1  A    127.0.0.1
"""


def _query_soa(zone: str, port: int) -> bool:
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    try:
        response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (dns.exception.DNSException, OSError):
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)
