"""A private ``dockerd`` for tests that stop and restart the engine.

The shared engine must never be restarted, so these tests start their own daemon
with its own data root, exec root, pidfile, socket and containerd namespace. Its
default bridge is an interface of its own (``--bridge``), created here and deleted
at the end. Two flags must stay away, because with either one dockerd deletes the
host's ``docker0`` (moby's ``removeDefaultBridgeInterface``) and so breaks the
shared daemon's default network: ``--bridge=none`` at every start, and
``--default-address-pool`` when it restarts. ``create_network`` therefore gives
the site network an explicit 10.213.0.0/24 subnet. ``--iptables=false`` keeps it
from editing the iptables chains the shared daemon owns (host-to-container
traffic on a bridge needs no rules).
"""

import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import docker

START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 60


# Subnet of the private daemon's site network, used by nothing else on the host.
SITE_SUBNET = "10.213.0.0/24"

class PrivateDockerd:
    def __init__(self) -> None:
        # Short: containerd's socket lives under the exec root and Unix socket paths
        # are limited to 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="hy-dockerd-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        # containerd namespaces allow letters and digits joined by single . _ or -.
        self.namespace = "hostyard-test-" + re.sub(r"[^A-Za-z0-9]", "", self.root.name)
        self.process: subprocess.Popen[bytes] | None = None
        # Interface names are limited to 15 bytes.
        self.bridge = "hyb" + re.sub(r"[^A-Za-z0-9]", "", self.root.name)[-8:]
        self._bridge_created = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def argv(self) -> list[str]:
        return [
            "dockerd",
            "--host", self.url,
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "dockerd.pid"),
            "--bridge", self.bridge,
            "--iptables=false",
            "--containerd-namespace", self.namespace,
            "--containerd-plugins-namespace", f"{self.namespace}-plugins",
            "--log-level=warn",
        ]  # fmt: skip

    def _create_bridge(self) -> None:
        if self._bridge_created:
            return
        commands = [
            ["ip", "link", "add", "name", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", "10.214.0.1/24", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ]
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        self._bridge_created = True

    def start(self) -> None:
        """Start the daemon and wait for its ping; raise RuntimeError if it does not respond."""
        self._create_bridge()
        with (self.root / "dockerd.log").open("ab") as log:
            self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                docker.DockerClient(base_url=self.url, timeout=10).ping()
                return
            except (docker.errors.DockerException, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"private dockerd did not start; see {self.root / 'dockerd.log'}")

    def stop(self) -> None:
        """SIGTERM the daemon by its PID and wait for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def remove_stale_bridges(self) -> None:
        """Delete host bridges left on 10.213.0.0/24 by a private daemon that was killed.

        Such a bridge keeps the route to the subnet, so the host could not reach the
        containers of the next private daemon's site network. The subnet is used only
        by these tests, so any interface on it is stale unless this daemon owns it.
        """
        routes = subprocess.run(
            ["ip", "-o", "route", "show", SITE_SUBNET],
            check=False,
            capture_output=True,
            text=True,
        ).stdout.split()
        if "dev" not in routes:
            return
        interface = routes[routes.index("dev") + 1]
        owned = {f"br-{network.id[:12]}" for network in self.client().networks.list()}
        if interface not in owned:
            subprocess.run(["ip", "link", "delete", interface], check=False, capture_output=True)

    def create_network(self, name: str, *, internal: bool) -> None:
        """Create the bridge network ``name`` on 10.213.0.0/24 unless it exists."""
        client = self.client()
        if client.networks.list(names=[name]):
            return
        pool = docker.types.IPAMPool(subnet=SITE_SUBNET)
        client.networks.create(
            name,
            driver="bridge",
            internal=internal,
            ipam=docker.types.IPAMConfig(pool_configs=[pool]),
        )

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=120)

    def remove(self) -> None:
        """Remove containers and networks, stop the daemon and delete its directories.

        Networks are removed while the daemon runs, because a stopped daemon leaves
        its bridge interfaces on the host.
        """
        if self.process is not None and self.process.poll() is None:
            client = self.client()
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.networks.prune()
        self.stop()
        if self._bridge_created:
            subprocess.run(["ip", "link", "delete", self.bridge], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
