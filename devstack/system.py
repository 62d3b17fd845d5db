"""Ensure the system services of the local stack run: Docker Engine, Redis, PostgreSQL 15.

Each ``ensure_*`` function is idempotent. It uses a service that already responds and
starts one only when none does, bound to loopback (dockerd to its Unix socket only).
What devstack starts is recorded under the run directory, so ``python -m devstack
down`` stops only those processes and never a service that was running before.
"""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import redis
import requests.exceptions
import structlog

from devstack.process import ManagedProcess, ServerStartError, pid_alive

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
CELERY_BROKER_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"

PG_VERSION = "15"
PG_CLUSTER = "main"
PG_PORT = 5432
PG_ROLE = "hostyard"
PG_PASSWORD = "hostyard"  # noqa: S105 - local development database on loopback only
PG_DATABASE = "hostyard"
DATABASE_URL = f"postgres://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:{PG_PORT}/{PG_DATABASE}"

# listen_addresses values that keep the cluster on loopback.
_LOOPBACK_LISTEN = {"localhost", "127.0.0.1", "::1", ""}


class SystemServiceError(RuntimeError):
    """A system service could not be used or started. The message names the fix."""


@dataclass(frozen=True)
class ServiceStatus:
    """Whether a service responds, and the PID devstack recorded if devstack started it."""

    name: str
    address: str
    running: bool
    started_pid: int | None = None

    def describe(self) -> str:
        """Render one status line, such as ``redis  up  127.0.0.1:6379  (devstack, pid 42)``."""
        state = "up" if self.running else "down"
        if self.started_pid is not None:
            owner = f"devstack, pid {self.started_pid}"
        elif self.running:
            owner = "not started by devstack"
        else:
            owner = "-"
        return f"{self.name:<11} {state:<5} {self.address:<40} ({owner})"


def default_run_dir() -> Path:
    """Return the run directory: ``HOSTYARD_RUN_DIR`` or ``.run`` in the repository."""
    return Path(os.environ.get("HOSTYARD_RUN_DIR", REPO_ROOT / ".run"))


def owned_pid(process: ManagedProcess) -> int | None:
    """Return the PID recorded for ``process`` if it still runs the same program.

    A recorded PID that now belongs to another program (PID reuse after a reboot)
    gives None, so nothing else is ever stopped through a stale pidfile.
    """
    pid = process.running_pid()
    if pid is None:
        return None

    # The kernel's command name (cut to 15 bytes), read from /proc/PID/stat. Not
    # argv[0] or the executable: redis-server rewrites its argv as a process title,
    # and Debian installs it as a link to redis-check-rdb. /proc/PID/comm was seen to
    # show the parent's name for a moment after exec, while stat already had the new one.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    command = stat[stat.find("(") + 1 : stat.rfind(")")]
    if command != Path(process.argv[0]).name[:15]:
        return None
    return pid


def stop_owned(process: ManagedProcess, *, timeout: float = 10.0) -> int | None:
    """Stop ``process`` if devstack started it; return the stopped PID, else None."""
    pid = owned_pid(process)
    if pid is None:
        process.pidfile.unlink(missing_ok=True)
        return None

    process.stop(timeout=timeout)
    log.info("service_stopped", service=process.name, pid=pid)
    return pid


# --- Docker Engine ------------------------------------------------------------------


def docker_host() -> str:
    """Return the engine address in use: ``DOCKER_HOST`` or the default Unix socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def docker_client(*, timeout: int = 120) -> docker.DockerClient:
    """Return a Docker SDK client for ``docker_host()``."""
    return docker.DockerClient(base_url=docker_host(), timeout=timeout)


def docker_responds(base_url: str) -> bool:
    """Return True if the engine at ``base_url`` responds to ``docker info``."""
    try:
        client = docker.DockerClient(base_url=base_url, timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        client.info()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return False
    finally:
        client.close()
    return True


def dockerd_process(run_dir: Path) -> ManagedProcess:
    """Describe the ``dockerd`` devstack starts: default socket only, no TCP listener."""
    # dockerd exits at start if its own --pidfile names a live process. ManagedProcess
    # writes its pidfile right after fork, so the two files must differ.
    return ManagedProcess(
        name="dockerd",
        argv=[
            "dockerd",
            "--host",
            DEFAULT_DOCKER_HOST,
            "--pidfile",
            str(run_dir / "dockerd.daemon.pid"),
        ],
        state_dir=run_dir,
    )


def ensure_docker(run_dir: Path | None = None, *, timeout: float = 60.0) -> ServiceStatus:
    """Make the Docker Engine respond, starting ``dockerd`` only if none responds.

    Idempotent. Raises SystemServiceError if ``DOCKER_HOST`` names another engine
    that does not respond, or if dockerd does not come up within ``timeout`` seconds.
    """
    run_dir = run_dir or default_run_dir()
    base_url = docker_host()
    process = dockerd_process(run_dir)

    if docker_responds(base_url):
        return ServiceStatus("docker", base_url, True, owned_pid(process))
    if base_url != DEFAULT_DOCKER_HOST:
        raise SystemServiceError(
            f"The Docker Engine at DOCKER_HOST={base_url} does not respond. Start that "
            f"engine, or unset DOCKER_HOST so devstack starts dockerd on {DEFAULT_DOCKER_HOST}."
        )

    try:
        pid = process.start(ready=lambda: docker_responds(base_url), timeout=timeout)
    except FileNotFoundError as exc:
        raise SystemServiceError(
            "dockerd is not installed. Install Debian's docker.io with scripts/install."
        ) from exc
    except ServerStartError as exc:
        raise SystemServiceError(f"dockerd did not start; see {process.log_path}.\n{exc}") from exc
    log.info("service_started", service="docker", pid=pid, address=base_url)
    return ServiceStatus("docker", base_url, True, pid)


def docker_status(run_dir: Path | None = None) -> ServiceStatus:
    """Report whether the engine responds and whether devstack started it."""
    run_dir = run_dir or default_run_dir()
    base_url = docker_host()
    pid = owned_pid(dockerd_process(run_dir))
    return ServiceStatus("docker", base_url, docker_responds(base_url), pid)


def stop_docker(run_dir: Path | None = None) -> int | None:
    """Stop dockerd if devstack started it; a dockerd started otherwise keeps running."""
    # At shutdown dockerd waits for running containers (--shutdown-timeout, 15 s by
    # default), so a short timeout would SIGKILL it and leave its containerd behind.
    return stop_owned(dockerd_process(run_dir or default_run_dir()), timeout=90.0)


# --- Redis --------------------------------------------------------------------------


def redis_responds() -> bool:
    """Return True if Redis on 127.0.0.1:6379 replies to PING."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def redis_process(run_dir: Path) -> ManagedProcess:
    """Describe the ``redis-server`` devstack starts: loopback, no persistence."""
    # Running in the foreground (no --daemonize) keeps the recorded PID the server's.
    data_dir = run_dir / "redis"
    return ManagedProcess(
        name="redis",
        argv=[
            "redis-server",
            "--bind",
            REDIS_HOST,
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
        ],
        state_dir=run_dir,
    )


def ensure_redis(run_dir: Path | None = None, *, timeout: float = 20.0) -> ServiceStatus:
    """Make Redis respond on 127.0.0.1:6379, starting ``redis-server`` only if none does.

    Idempotent. Raises SystemServiceError if the server does not come up in time.
    """
    run_dir = run_dir or default_run_dir()
    process = redis_process(run_dir)
    address = f"{REDIS_HOST}:{REDIS_PORT}"

    if redis_responds():
        return ServiceStatus("redis", address, True, owned_pid(process))

    (run_dir / "redis").mkdir(parents=True, exist_ok=True)
    try:
        pid = process.start(ready=redis_responds, timeout=timeout)
    except FileNotFoundError as exc:
        raise SystemServiceError(
            "redis-server is not installed. Install Debian's redis-server with scripts/install."
        ) from exc
    except ServerStartError as exc:
        raise SystemServiceError(f"Redis did not start; see {process.log_path}.\n{exc}") from exc
    log.info("service_started", service="redis", pid=pid, address=address)
    return ServiceStatus("redis", address, True, pid)


def redis_status(run_dir: Path | None = None) -> ServiceStatus:
    """Report whether Redis responds and whether devstack started it."""
    pid = owned_pid(redis_process(run_dir or default_run_dir()))
    return ServiceStatus("redis", f"{REDIS_HOST}:{REDIS_PORT}", redis_responds(), pid)


def stop_redis(run_dir: Path | None = None) -> int | None:
    """Stop redis-server if devstack started it."""
    return stop_owned(redis_process(run_dir or default_run_dir()))


# --- PostgreSQL ---------------------------------------------------------------------


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(  # noqa: S603 - fixed argv, no user input
            argv, capture_output=True, text=True, check=check, timeout=120
        )
    except FileNotFoundError as exc:
        raise SystemServiceError(
            f"{argv[0]} is not installed. Install Debian's postgresql with scripts/install."
        ) from exc
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip()
        raise SystemServiceError(
            f"Command failed with exit status {exc.returncode}: {' '.join(argv)}\n{detail}"
        ) from exc


def _psql(sql: str) -> str:
    argv = ["runuser", "-u", "postgres", "--", "psql", "-p", str(PG_PORT)]
    argv += ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql]
    return _run(argv).stdout.strip()


def pg_running() -> bool:
    """Return True if Debian's PostgreSQL 15 ``main`` cluster runs."""
    # pg_ctlcluster status exits 0 when the server runs and 3 when it is down.
    result = _run(["pg_ctlcluster", PG_VERSION, PG_CLUSTER, "status"], check=False)
    return result.returncode == 0


def pg_postmaster_pid() -> int | None:
    """Return the postmaster PID of the running cluster, from its ``postmaster.pid``."""
    pidfile = Path(f"/var/lib/postgresql/{PG_VERSION}/{PG_CLUSTER}/postmaster.pid")
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pg_listen_addresses() -> str:
    """Return the cluster's configured ``listen_addresses``, read without starting it."""
    # "postgres -C" evaluates the configuration files and prints one setting.
    argv = ["runuser", "-u", "postgres", "--", f"/usr/lib/postgresql/{PG_VERSION}/bin/postgres"]
    argv += ["-D", f"/var/lib/postgresql/{PG_VERSION}/{PG_CLUSTER}"]
    argv += ["-c", f"config_file=/etc/postgresql/{PG_VERSION}/{PG_CLUSTER}/postgresql.conf"]
    argv += ["-C", "listen_addresses"]
    return _run(argv).stdout.strip()


def _check_loopback_only() -> None:
    value = pg_listen_addresses()
    addresses = {part.strip() for part in value.split(",")}
    if not addresses <= _LOOPBACK_LISTEN:
        raise SystemServiceError(
            f"PostgreSQL {PG_VERSION}/{PG_CLUSTER} has listen_addresses = '{value}', which "
            "reaches beyond loopback. Set listen_addresses = 'localhost' in "
            f"/etc/postgresql/{PG_VERSION}/{PG_CLUSTER}/postgresql.conf and run devstack again."
        )


def _ensure_pg_role_and_database() -> None:
    # The names and the password are module constants, never user input.
    role_query = f"SELECT 1 FROM pg_roles WHERE rolname = '{PG_ROLE}'"  # noqa: S608
    if _psql(role_query) != "1":
        _psql(f"CREATE ROLE {PG_ROLE} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'")
        log.info("postgres_role_created", role=PG_ROLE)

    database_query = f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"  # noqa: S608
    if _psql(database_query) != "1":
        _psql(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_ROLE}")
        log.info("postgres_database_created", database=PG_DATABASE)


def _pg_marker(run_dir: Path) -> Path:
    return run_dir / "postgresql.pid"


def ensure_postgresql(run_dir: Path | None = None) -> str:
    """Make PostgreSQL 15 run with role and database ``hostyard``; return DATABASE_URL.

    Idempotent: starts Debian's ``main`` cluster only if it is down, and creates the
    role (LOGIN, CREATEDB, so tests can create their database) and the database only
    if missing. When devstack starts the cluster it records the postmaster PID.
    Raises SystemServiceError if the cluster listens beyond loopback or fails to start.
    """
    run_dir = run_dir or default_run_dir()

    if not pg_running():
        _check_loopback_only()
        _run(["pg_ctlcluster", PG_VERSION, PG_CLUSTER, "start"])
        pid = pg_postmaster_pid()
        run_dir.mkdir(parents=True, exist_ok=True)
        _pg_marker(run_dir).write_text(f"{pid}\n")
        log.info("service_started", service="postgresql", pid=pid, port=PG_PORT)

    _ensure_pg_role_and_database()
    return DATABASE_URL


def _pg_started_pid(run_dir: Path) -> int | None:
    try:
        recorded = int(_pg_marker(run_dir).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return recorded if recorded == pg_postmaster_pid() else None


def postgresql_status(run_dir: Path | None = None) -> ServiceStatus:
    """Report whether the cluster runs and whether devstack started it."""
    started = _pg_started_pid(run_dir or default_run_dir())
    address = f"127.0.0.1:{PG_PORT} ({PG_VERSION}/{PG_CLUSTER})"
    return ServiceStatus("postgresql", address, pg_running(), started)


def stop_postgresql(run_dir: Path | None = None) -> int | None:
    """Stop the cluster only if its postmaster is the one devstack started."""
    run_dir = run_dir or default_run_dir()
    pid = _pg_started_pid(run_dir)
    if pid is not None:
        _run(["pg_ctlcluster", PG_VERSION, PG_CLUSTER, "stop"])
        log.info("service_stopped", service="postgresql", pid=pid)
    _pg_marker(run_dir).unlink(missing_ok=True)
    return pid
