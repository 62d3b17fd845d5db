"""Command line for the local stack: ``python -m devstack up|down|status|env``.

``up`` makes the Docker Engine, Redis and PostgreSQL run, builds the local images,
starts Knot (DNS), Pebble (ACME) and Caddy (edge) on their default loopback ports
with their files under the run directory, and writes ``<run dir>/env`` for
``source .run/env``. ``down`` stops only what devstack started, by the PIDs it
recorded. ``status`` prints one line per service and ``env`` prints the env file.
The run directory is ``HOSTYARD_RUN_DIR`` or ``.run`` in the repository.
"""

import argparse
import importlib
import logging
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from devstack import system
from devstack.images import ALL_IMAGES, ImageBuildError, ensure_images
from devstack.process import ServerStartError, port_open

KNOT_PORT = 5353


@dataclass(frozen=True)
class ServerSpec:
    """A private server devstack starts, named by module so it is imported lazily."""

    name: str
    module: str
    class_name: str
    status_port: int
    options: dict[str, Any] = field(default_factory=dict)

    def load(self, run_dir: Path) -> Any | None:
        """Return the server object, or None if its module is not in this checkout."""
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name != self.module:
                raise
            return None
        server_class = getattr(module, self.class_name)
        return server_class(run_dir / self.name, **self.options)


SERVERS = (
    ServerSpec("knot", "devstack.knot", "KnotServer", KNOT_PORT, {"port": KNOT_PORT}),
    ServerSpec(
        "pebble",
        "devstack.pebble",
        "PebbleServer",
        14000,
        {
            "port": 14000,
            "management_port": 15000,
            "http_port": 8080,
            "dns_server": f"127.0.0.1:{KNOT_PORT}",
        },
    ),
    ServerSpec(
        "caddy",
        "devstack.caddy",
        "CaddyServer",
        2019,
        {"admin_port": 2019, "http_port": 8080, "https_port": 8443},
    ),
)


def _missing_line(spec: ServerSpec) -> str:
    return (
        f"{spec.name:<11} missing {spec.module} is not in this checkout yet, "
        f"so {spec.class_name} was not started"
    )


def _server_line(spec: ServerSpec, running: bool, pid: int | None) -> str:
    status = system.ServiceStatus(spec.name, f"127.0.0.1:{spec.status_port}", running, pid)
    return status.describe()


# --- up -----------------------------------------------------------------------------


def command_up(args: argparse.Namespace) -> int:
    """Start the stack; return 0 when every service runs, 1 otherwise."""
    run_dir = system.default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    environment = {
        "CELERY_BROKER_URL": system.CELERY_BROKER_URL,
        "DOCKER_HOST": system.docker_host(),
    }

    try:
        print(system.ensure_docker(run_dir).describe())
        print(system.ensure_redis(run_dir).describe())
        environment["DATABASE_URL"] = _database_url(run_dir, sqlite=args.sqlite)
        _build_images()
    except (system.SystemServiceError, ServerStartError) as exc:
        print(f"devstack up failed: {exc}", file=sys.stderr)
        return 1

    missing = []
    servers = [] if args.system_only else SERVERS
    for spec in servers:
        server = spec.load(run_dir)
        if server is None:
            print(_missing_line(spec))
            missing.append(spec.module)
            continue
        try:
            server.start()
        except ServerStartError as exc:
            print(f"devstack up failed: {spec.name} did not start.\n{exc}", file=sys.stderr)
            return 1
        environment.update(server.env())
        print(_server_line(spec, True, system.owned_pid(server.process)))

    env_path = write_env_file(run_dir, environment)
    print(f"wrote {env_path}; load it with: source {_display(env_path)}")
    if missing:
        print(
            f"devstack up incomplete: {', '.join(missing)} missing. The other services "
            "run; run `python -m devstack up` again once the module exists.",
            file=sys.stderr,
        )
        return 1
    return 0


def _database_url(run_dir: Path, *, sqlite: bool) -> str:
    if not sqlite:
        url = system.ensure_postgresql(run_dir)
        print(system.postgresql_status(run_dir).describe())
        return url

    # The same file the settings use when DATABASE_URL is unset.
    path = (run_dir / "hostyard.sqlite3").resolve()
    print(f"{'postgresql':<11} skip  (--sqlite: using {path})")
    return f"sqlite:///{path}"


def _build_images() -> None:
    client = system.docker_client()
    try:
        built = ensure_images(client)
    except ImageBuildError as exc:
        raise system.SystemServiceError(str(exc)) from exc
    finally:
        client.close()
    detail = f"built {', '.join(built)}" if built else "all present"
    print(f"{'images':<11} ok    {len(ALL_IMAGES)} images ({detail})")


def write_env_file(run_dir: Path, environment: dict[str, str]) -> Path:
    """Write ``export`` lines for ``environment`` to ``<run dir>/env``, readable by owner only.

    The file carries the TSIG secret, so it is created with mode 0600 and replaced
    atomically.
    """
    lines = ["# Written by `python -m devstack up`. Load it with: source .run/env"]
    if "HOSTYARD_RUN_DIR" in os.environ:
        lines.append(f"export HOSTYARD_RUN_DIR={shlex.quote(str(run_dir))}")
    for key in sorted(environment):
        lines.append(f"export {key}={shlex.quote(environment[key])}")

    path = run_dir / "env"
    temporary = run_dir / "env.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    temporary.replace(path)
    return path


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- down, status, env --------------------------------------------------------------


def command_down(args: argparse.Namespace) -> int:
    """Stop what devstack started, newest first; leave every other process running."""
    run_dir = system.default_run_dir()

    for spec in reversed(SERVERS):
        server = spec.load(run_dir)
        if server is None:
            continue
        pid = system.owned_pid(server.process)
        if pid is not None:
            server.stop()
        print(_down_line(spec.name, pid))

    stops: list[tuple[str, Callable[[Path], int | None]]] = [
        ("redis", system.stop_redis),
        ("postgresql", system.stop_postgresql),
        ("docker", system.stop_docker),
    ]
    for name, stop in stops:
        print(_down_line(name, stop(run_dir)))
    return 0


def _down_line(name: str, pid: int | None) -> str:
    if pid is None:
        return f"{name:<11} left  (not started by devstack, or not running)"
    return f"{name:<11} stop  (devstack, pid {pid})"


def command_status(args: argparse.Namespace) -> int:
    """Print one line per service; return 0 when all run, 1 otherwise."""
    run_dir = system.default_run_dir()
    statuses = [
        system.docker_status(run_dir),
        system.redis_status(run_dir),
        system.postgresql_status(run_dir),
    ]
    all_running = all(status.running for status in statuses)
    for status in statuses:
        print(status.describe())

    for spec in SERVERS:
        server = spec.load(run_dir)
        if server is None:
            print(_missing_line(spec))
            all_running = False
            continue
        running = port_open(spec.status_port)
        all_running = all_running and running
        print(_server_line(spec, running, system.owned_pid(server.process)))
    return 0 if all_running else 1


def command_env(args: argparse.Namespace) -> int:
    """Print the env file that ``up`` wrote."""
    path = system.default_run_dir() / "env"
    try:
        print(path.read_text(), end="")
    except FileNotFoundError:
        print(f"{path} not found. Run `python -m devstack up` first.", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for ``python -m devstack``."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack", description="Run Hostyard's local services on loopback."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every service event")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the services and write the env file")
    up.add_argument(
        "--sqlite",
        action="store_true",
        help="skip PostgreSQL and point DATABASE_URL at SQLite in the run directory",
    )
    up.add_argument(
        "--system-only",
        action="store_true",
        help="start only Docker, Redis and PostgreSQL and build the images, not Knot, "
        "Pebble and Caddy (the test suite starts its own on free ports)",
    )
    up.set_defaults(handler=command_up)
    commands.add_parser("down", help="stop what devstack started").set_defaults(
        handler=command_down
    )
    commands.add_parser("status", help="print one line per service").set_defaults(
        handler=command_status
    )
    commands.add_parser("env", help="print the env file").set_defaults(handler=command_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
