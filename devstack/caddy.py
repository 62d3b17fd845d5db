"""A private Caddy edge proxy on loopback for the quickstart and the tests.

Caddy (``caddy`` from Debian's package, 2.6) runs as the current user with its
configuration, storage, ``HOME`` and XDG folders under ``state_dir``. Its admin API,
HTTP listener and HTTPS listener bind 127.0.0.1 only. Automatic HTTPS is disabled on
both listeners and no automation policy is configured, so Caddy never requests a
certificate itself: its default issuers are public CAs on the internet. Caddy 2 has
no telemetry and no update check.

The starting configuration is the skeleton the Caddy edge driver expects (see
``provisioning.drivers.edge.caddy.build_apps_config``); the driver adds routes and
certificates through the admin API.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import requests
import structlog

from devstack.process import ManagedProcess
from provisioning.drivers.edge.caddy import build_apps_config

log = structlog.get_logger(__name__)


@dataclass
class CaddyServer:
    """One ``caddy run`` process with its files under ``state_dir``, listening on 127.0.0.1."""

    state_dir: Path
    admin_port: int = 2019
    http_port: int = 8080
    https_port: int = 8443

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "caddy.json"

    @property
    def process(self) -> ManagedProcess:
        home = self.state_dir.resolve() / "home"
        return ManagedProcess(
            name="caddy",
            argv=["caddy", "run", "--config", str(self.config_path)],
            state_dir=self.state_dir,
            env={
                "HOME": str(home),
                "XDG_DATA_HOME": str(home / "data"),
                "XDG_CONFIG_HOME": str(home / "config"),
            },
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start Caddy unless it already runs, and wait until its admin API responds.

        The configuration file is rewritten on every start, so routes and
        certificates added through the admin API are gone after a restart (the
        reconciler adds them back). Raises ``ServerStartError`` with Caddy's log
        tail if it does not come up.
        """
        (self.state_dir / "home").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.build_config(), indent=2))

        self.process.start(ready=self._admin_responds, timeout=timeout)
        log.info(
            "caddy.started",
            admin_port=self.admin_port,
            http_port=self.http_port,
            https_port=self.https_port,
        )

    def stop(self) -> None:
        """Stop the Caddy process this server started, or do nothing when it does not run."""
        self.process.stop()
        log.info("caddy.stopped", admin_port=self.admin_port)

    def env(self) -> dict[str, str]:
        """Environment variables that point Hostyard's settings at this server."""
        return {
            "HOSTYARD_CADDY_ADMIN_URL": self.admin_url,
            "HOSTYARD_EDGE_HTTP_PORT": str(self.http_port),
            "HOSTYARD_EDGE_HTTPS_PORT": str(self.https_port),
        }

    def build_config(self) -> dict:
        """Build Caddy's whole JSON configuration: admin API, storage and the edge skeleton."""
        return {
            "admin": {
                "listen": f"127.0.0.1:{self.admin_port}",
                # The configuration is rebuilt at each start: nothing is saved to disk.
                "config": {"persist": False},
            },
            "storage": {
                "module": "file_system",
                "root": str(self.state_dir.resolve() / "storage"),
            },
            "logging": {"logs": {"default": {"level": "INFO"}}},
            "apps": build_apps_config(
                listen_host="127.0.0.1", http_port=self.http_port, https_port=self.https_port
            ),
        }

    def _admin_responds(self) -> bool:
        try:
            response = requests.get(f"{self.admin_url}/config/", timeout=1)
        except requests.RequestException:
            return False
        return response.ok
