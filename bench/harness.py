"""Shared pieces of the benchmarks: Django setup, gunicorn, Celery workers, cleanup, statistics.

Every process started here binds 127.0.0.1 and is stopped through the PID recorded
when it was started. Containers and volumes are found by the deployment label, so a
benchmark removes only what carries its own ``HOSTYARD_DEPLOYMENT`` (``bench``).
"""

import io
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = REPO / ".run" / "bench"

SETTINGS_MODULE = "bench.settings"
# The catalog's demo app points at this image during benchmarks; see ensure_demo_images.
BENCH_IMAGE = "hostyard/demo-bench:1.0"
DEPLOYMENT = "bench"


class BenchError(RuntimeError):
    """A benchmark could not run; the message names what is missing and how to fix it."""


# --- environment ------------------------------------------------------------------


def setup_django() -> None:
    """Configure Django for the benchmark database; raise BenchError if it would hit a shared one.

    The benchmarks flush their database and their Redis database, so both must be
    named explicitly instead of falling back to the development defaults.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    os.environ.setdefault("HOSTYARD_DEPLOYMENT", DEPLOYMENT)
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise BenchError(
            "DATABASE_URL is not a PostgreSQL URL. The benchmarks flush their database: set "
            "DATABASE_URL=postgres://hostyard:hostyard@127.0.0.1:5432/hostyard_bench "
            "(bench/run sets it)."
        )
    if not os.environ.get("CELERY_BROKER_URL"):
        raise BenchError(
            "CELERY_BROKER_URL is not set. The benchmarks flush the broker's Redis database: "
            "set CELERY_BROKER_URL=redis://127.0.0.1:6379/10 (bench/run sets it)."
        )
    if os.environ["HOSTYARD_DEPLOYMENT"] in ("", "default"):
        raise BenchError(
            "HOSTYARD_DEPLOYMENT is 'default'; set HOSTYARD_DEPLOYMENT=bench so the benchmark "
            "removes only its own containers."
        )
    LOG_DIR.mkdir(parents=True, exist_ok=True)

    import django

    django.setup()
    # Workers and gunicorn keep the configured level; the benchmark's own process prints
    # its report, not a log line per signup.
    logging.getLogger().setLevel(logging.WARNING)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment for gunicorn and worker processes started by a benchmark."""
    return {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE, **(extra or {})}


def reset_state() -> None:
    """Remove the deployment's containers, empty the database and broker, load the catalog.

    The catalog's demo app is pointed at ``BENCH_IMAGE``.
    """
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from hosting.catalog import load_catalog

    remove_deployment_resources()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    # Other branches merge into this checkout while benchmarks run: apply new migrations.
    call_command("migrate", interactive=False, verbosity=0)
    truncate_tables()
    load_catalog(image_overrides={"demo": BENCH_IMAGE})


# Kept by truncate_tables: migration history, and rows Django creates after migrating.
KEPT_TABLES = frozenset({"django_migrations", "django_content_type", "auth_permission"})


def truncate_tables() -> None:
    """Empty every table the database has, except ``KEPT_TABLES``.

    The table list comes from the database, not from the loaded models, so tables
    added by a migration merged after this process started are emptied too.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        names = [
            name for name in connection.introspection.table_names(cursor) if name not in KEPT_TABLES
        ]
        quoted = ", ".join(connection.ops.quote_name(name) for name in names)
        cursor.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")


def flush_broker() -> None:
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def docker_client() -> Any:
    import docker
    from django.conf import settings

    return docker.DockerClient(base_url=settings.DOCKER_HOST, timeout=120)


def ensure_demo_images() -> None:
    """Build the demo images and ``BENCH_IMAGE``, the demo image without its HEALTHCHECK.

    The demo image runs ``wget`` every 2 s as its Docker health check, so 100
    running sites start 50 processes a second, which saturates 2 cores and slows
    every figure. The control plane and the primitives both poll the app over
    HTTP, and neither reads Docker's health status, so the benchmarks leave it out.
    """
    from devstack.images import DEMO_IMAGE_1_0, ensure_images

    client = docker_client()
    ensure_images(client)
    dockerfile = f"FROM {DEMO_IMAGE_1_0}\nHEALTHCHECK NONE\n".encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=BENCH_IMAGE, rm=True)


def remove_deployment_resources(threads: int = 4) -> int:
    """Remove every container and volume labelled with this deployment; return the count."""
    from django.conf import settings

    from provisioning.drivers.runtime.base import LABEL_DEPLOYMENT

    client = docker_client()
    label = {"label": f"{LABEL_DEPLOYMENT}={settings.HOSTYARD_DEPLOYMENT}"}
    containers = client.containers.list(all=True, filters=label)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda c: c.remove(force=True), containers))
    volumes = client.volumes.list(filters=label)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda v: v.remove(force=True), volumes))
    return len(containers)


def make_organization(slug: str) -> tuple[Any, str]:
    """Create an organization and return it with a raw API key."""
    from hosting.models import ApiKey, Organization

    organization = Organization.objects.create(name=f"Benchmark {slug}", slug=slug)
    _, raw_key = ApiKey.issue(organization=organization, name="bench")
    return organization, raw_key


# --- processes --------------------------------------------------------------------


def free_port() -> int:
    from devstack.process import free_port as devstack_free_port

    return devstack_free_port()


def stop_pid(process: subprocess.Popen, *, timeout: float = 20.0) -> None:
    """Stop a process this module started: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass
class Gunicorn:
    """The project's WSGI app under gunicorn on 127.0.0.1, with the benchmark URLconf."""

    workers: int = 2
    name: str = "gunicorn"
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start gunicorn and wait until /bench/ping returns 200; raise BenchError if not."""
        self.port = free_port()
        log_path = LOG_DIR / f"{self.name}.log"
        argv = [
            sys.executable, "-m", "gunicorn", "config.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
            "--error-logfile", str(log_path), "--log-level", "warning",
        ]  # fmt: skip
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=REPO, env=child_env(self.env), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if requests.get(f"{self.url}/bench/ping", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise BenchError(
            f"gunicorn did not respond on {self.url} within {timeout:.0f} s; see {log_path}"
        )

    def stop(self) -> None:
        if self.process is not None:
            stop_pid(self.process)

    def __enter__(self) -> "Gunicorn":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class Workers:
    """``count`` Celery worker processes, each ``--pool=solo`` (one task at a time)."""

    count: int = 1
    name: str = "worker"
    env: dict[str, str] = field(default_factory=dict)
    extra_args: Sequence[str] = ()
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def _log_path(self, index: int) -> Path:
        return LOG_DIR / f"{self.name}-{index}.log"

    def start(self, timeout: float = 90.0) -> None:
        """Start the workers and wait until each logs that it is ready; raise BenchError if not."""
        for index in range(self.count):
            path = self._log_path(index)
            path.write_text("")
            argv = [
                sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-n", f"{self.name}{index}@%h", "--loglevel=INFO", *self.extra_args,
            ]  # fmt: skip
            with path.open("ab") as log:
                process = subprocess.Popen(
                    argv, cwd=REPO, env=child_env(self.env), stdout=log, stderr=subprocess.STDOUT
                )
            self.processes.append(process)
        deadline = time.monotonic() + timeout
        waiting = set(range(self.count))
        while waiting and time.monotonic() < deadline:
            for index in list(waiting):
                if self.processes[index].poll() is not None:
                    self.stop()
                    raise BenchError(f"worker {index} exited; see {self._log_path(index)}")
                if " ready." in self._log_path(index).read_text(errors="replace"):
                    waiting.discard(index)
            time.sleep(0.2)
        if waiting:
            self.stop()
            raise BenchError(f"workers {sorted(waiting)} not ready after {timeout:.0f} s")

    def stop(self) -> None:
        for process in self.processes:
            stop_pid(process)

    def __enter__(self) -> "Workers":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def rss_kib(pid: int) -> int:
    """Return the resident set size of ``pid`` in KiB, read from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no VmRSS line; is the process a zombie?")


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --- statistics -------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Return the nearest-rank percentile (``pct`` in 0-100) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else math.nan


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --- results and profiles ---------------------------------------------------------


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Store one benchmark's figures and its report section as bench/results/<name>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    data = {"benchmark": name, "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **data}
    path.write_text(json.dumps(data, indent=2, default=str))
    print(data.get("section", ""))
    return path


@dataclass
class Profile:
    """A py-spy sampling profile of running processes, read back as function shares."""

    pid: int
    name: str
    subprocesses: bool = False
    process: subprocess.Popen | None = None

    @property
    def output(self) -> Path:
        return LOG_DIR / f"{self.name}.pyspy.txt"

    def start(self) -> bool:
        """Start sampling; return False (and sample nothing) if py-spy is not installed."""
        executable = Path(sys.executable).with_name("py-spy")
        if not executable.exists():
            return False
        argv = [
            str(executable), "record", "--pid", str(self.pid), "--format", "raw",
            "--output", str(self.output), "--rate", "50", "--idle", "--nonblocking",
        ]  # fmt: skip
        if self.subprocesses:
            argv.append("--subprocesses")
        log = (LOG_DIR / f"{self.name}.pyspy.log").open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        return True

    def stop(self) -> dict[str, Any]:
        """Stop sampling; return the busy share and where busy samples fall, largest first."""
        if self.process is None:
            return {}
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        return summarize_profile(self.output)


# py-spy names project files relative to the repository, e.g. provisioning/engine/runner.py.
PROJECT_PACKAGES = ("config/", "hosting/", "provisioning/", "billing/", "bench/", "devstack/")
# Frames of these packages also name a place: DRF runs views, serializers and pagination.
FOCUS_PACKAGES = (*PROJECT_PACKAGES, "rest_framework/", "django_filters/")


def summarize_profile(path: Path, top: int = 10) -> dict[str, Any]:
    """Attribute each sample to its deepest project or DRF frame and the library call below it.

    Returns ``busy_percent`` (samples inside project or DRF code, out of all) and
    ``places``: (place, percent of busy samples). Samples with no such frame are the
    worker waiting for a message or gunicorn waiting for a request.
    """
    if not path.exists():
        return {}
    places: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        place = _place(frames)
        if place:
            busy += count
            places[place] = places.get(place, 0) + count
            leaf = _library(frames[-1])
            leaves[leaf] = leaves.get(leaf, 0) + count
    ranked = sorted(places.items(), key=lambda item: item[1], reverse=True)[:top]
    leaf_ranked = sorted(leaves.items(), key=lambda item: item[1], reverse=True)[:6]
    return {
        "busy_percent": 100 * busy / total if total else 0.0,
        "places": [(place, 100 * count / busy) for place, count in ranked] if busy else [],
        "leaf_libraries": [(name, 100 * count / busy) for name, count in leaf_ranked]
        if busy
        else [],
    }


def _library(frame: str) -> str:
    """Return the top-level package or module of a py-spy frame, e.g. ``psycopg``."""
    location = frame.partition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    relative = location.replace(str(REPO) + "/", "").split("site-packages/")[-1]
    return relative.split("/")[0].removesuffix(".py")


def _place(frames: list[str]) -> str:
    # py-spy raw frames read "function (path/to/file.py:line)", outermost first.
    parsed = []
    for frame in frames:
        function, _, location = frame.partition(" (")
        file_path = location.rstrip(")").rsplit(":", 1)[0].replace(str(REPO) + "/", "")
        parsed.append((function, file_path.split("site-packages/")[-1]))
    focus = [index for index, (_, path) in enumerate(parsed) if path.startswith(FOCUS_PACKAGES)]
    if not focus:
        return ""
    deepest = focus[-1]
    function, file_path = parsed[deepest]
    place = f"{function} ({file_path})"
    if deepest + 1 < len(parsed):
        below, below_path = parsed[deepest + 1]
        library = below_path.split("/")[0].removesuffix(".py")
        place += f" -> {below} ({library})"
    return place


def profile_table(profile: dict[str, Any]) -> str:
    """Render a profile: the places table, then the share of the innermost frame's library."""
    table = markdown_table(
        ["place", "% of busy samples"],
        [(f"`{place}`", fmt(pct, 1)) for place, pct in profile.get("places", [])],
    )
    leaves = ", ".join(f"{name} {fmt(pct, 0)}%" for name, pct in profile.get("leaf_libraries", []))
    if not leaves:
        return table
    return f"{table}\n\nInnermost frame by library (where the busy samples were): {leaves}."
