"""Start and stop one local server process, bound to loopback, tracked by a pidfile.

Used by the quickstart (``python -m devstack up``), the test fixtures and the
benchmarks. A server is stopped only through the PID this module recorded.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ServerStartError(RuntimeError):
    """A local server did not come up; the message carries its log's tail."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ManagedProcess:
    """A server started in the background with its output in ``log_path``."""

    name: str
    argv: Sequence[str]
    state_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    @property
    def pidfile(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def running_pid(self) -> int | None:
        """Return the recorded PID if that process still runs."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, *, ready: Callable[[], bool], timeout: float = 30.0) -> int:
        """Start the process unless it already runs, then wait until ``ready()`` is true.

        Raises ServerStartError with the log's last lines when the process exits or
        is not ready within ``timeout`` seconds.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pid = self.running_pid()
        if pid is None:
            with self.log_path.open("ab") as log:
                proc = subprocess.Popen(  # noqa: S603 - argv is built by devstack, not user input
                    list(self.argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.cwd,
                    env={**os.environ, **self.env},
                    start_new_session=True,
                )
            pid = proc.pid
            self.pidfile.write_text(f"{pid}\n")

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return pid
            if not pid_alive(pid) or _is_zombie(pid):
                break
            time.sleep(0.05)
        raise ServerStartError(f"{self.name} did not start; last log lines:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the recorded process with SIGTERM, then SIGKILL after ``timeout``."""
        pid = self.running_pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return

        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid) and not _is_zombie(pid):
            time.sleep(0.05)
        if pid_alive(pid) and not _is_zombie(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
        self.pidfile.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _reap(pid: int) -> None:
    # Only children of this process can be reaped; others are reaped by their parent.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
