"""A private ``dockerd`` for tests that stop and restart the engine.

The shared engine must never be restarted, so these tests start their own daemon
with its own data root, exec root, pidfile, socket and containerd namespace. It
creates no default bridge (``--bridge=none``), takes site networks from a
10.213.0.0/16 pool, and runs with ``--iptables=false`` so that it never edits the
iptables chains the shared daemon owns (host-to-container traffic on a bridge
needs no rules).
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


class PrivateDockerd:
    def __init__(self) -> None:
        # Short: containerd's socket lives under the exec root and Unix socket paths
        # are limited to 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="hy-dockerd-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        # containerd namespaces allow letters and digits joined by single . _ or -.
        self.namespace = "hostyard-test-" + re.sub(r"[^A-Za-z0-9]", "", self.root.name)
        self.process: subprocess.Popen[bytes] | None = None

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
            "--bridge=none",
            "--iptables=false",
            "--default-address-pool", "base=10.213.0.0/16,size=24",
            "--containerd-namespace", self.namespace,
            "--containerd-plugins-namespace", f"{self.namespace}-plugins",
            "--log-level=warn",
        ]  # fmt: skip

    def start(self) -> None:
        """Start the daemon and wait for its ping; raise RuntimeError if it does not respond."""
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
        shutil.rmtree(self.root, ignore_errors=True)
