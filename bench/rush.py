"""Semester rush: 100 signups at once through the API, drained by 1, 2 and 4 worker processes.

The figure is sites per minute from the first request until every site is running.
Its baseline is the create operation's primitives run for the same number of sites
in a plain loop in this process, measured before and after the worker runs. The API is
served by gunicorn; each worker is a ``--pool=solo`` Celery process. Sites use the
``micro`` plan, three per customer (the plan's limit), so a rush spreads over many
customers. Run alone with ``python -m bench.rush``.
"""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from bench import harness
from bench.edge import EdgeStack, create_steps
from bench.harness import fmt, median, ratio
from bench.primitives import make_target, needs_rows, run_direct

SIGNUPS = int(os.environ.get("BENCH_RUSH_SIGNUPS", "100"))
WORKER_COUNTS = (1, 2, 4)
CLIENT_THREADS = 16
SITES_PER_CUSTOMER = 3
RUSH_TIMEOUT_SECONDS = 420.0
PROFILE_SIGNUPS = 30
# A worker rate below this share of the plain loop's rate gets profiled.
PROFILE_BELOW = 0.8


def submit_signups(api_url: str, raw_key: str, count: int) -> list[int]:
    """POST ``count`` signups from ``CLIENT_THREADS`` threads at once; return the status codes."""
    local = threading.local()

    def post(index: int) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Api-Key {raw_key}"
        customer = index // SITES_PER_CUSTOMER
        try:
            answer = local.session.post(
                f"{api_url}/api/v1/sites",
                json={
                    "customer_email": f"student-{customer}@bench.hostyard.test",
                    "app": "demo",
                    "plan": "micro",
                },
                timeout=60,
            )
        except requests.RequestException:
            return 0
        return answer.status_code

    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        return list(pool.map(post, range(count)))


def site_counts() -> dict[str, int]:
    from django.db.models import Count

    from hosting.models import Site

    rows = Site.objects.values("status").annotate(total=Count("id"))
    return {row["status"]: row["total"] for row in rows}


def step_medians() -> dict[str, float]:
    """Return the median duration in seconds of each finished create step in the database."""
    from provisioning.models import OperationStep, StepStatus

    durations: dict[str, list[float]] = {}
    rows = OperationStep.objects.filter(status=StepStatus.SUCCEEDED).values_list(
        "name", "duration_ms"
    )
    for name, duration_ms in rows:
        durations.setdefault(name, []).append(duration_ms / 1000)
    return {name: median(values) for name, values in durations.items()}


def rush(api: harness.Gunicorn, worker_count: int, signups: int, env: dict) -> dict[str, Any]:
    """Run one rush with ``worker_count`` workers; return its rate and failures."""
    harness.reset_state()
    _, raw_key = harness.make_organization(f"bench-rush-{worker_count}")

    with harness.Workers(count=worker_count, name=f"rush-worker-{worker_count}", env=env):
        started = time.monotonic()
        codes = submit_signups(api.url, raw_key, signups)
        accepted = sum(1 for code in codes if code == 202)
        submitted = time.monotonic() - started

        def settled() -> bool:
            counts = site_counts()
            return counts.get("running", 0) + counts.get("failed", 0) >= accepted

        finished = harness.wait_until(settled, timeout=RUSH_TIMEOUT_SECONDS, interval=0.25)
        elapsed = time.monotonic() - started
        counts = site_counts()
        steps = step_medians()

    cleanup_started = time.monotonic()
    harness.remove_deployment_resources()
    running = counts.get("running", 0)
    return {
        "workers": worker_count,
        "signups": signups,
        "accepted": accepted,
        "rejected": {str(code): codes.count(code) for code in set(codes) if code != 202},
        "running": running,
        "failed": counts.get("failed", 0),
        "unfinished": 0 if finished else accepted - running - counts.get("failed", 0),
        "submit_seconds": submitted,
        "seconds": elapsed,
        "sites_per_minute": 60 * running / elapsed if finished else float("nan"),
        "cleanup_seconds": time.monotonic() - cleanup_started,
        "step_medians": steps,
    }


def plain_loop(signups: int, steps: list[str]) -> dict[str, Any]:
    """Run the primitives for ``signups`` sites one after another; return the rate."""
    from hosting.models import App, Plan

    harness.reset_state()
    organization, _ = harness.make_organization("bench-rush-loop")
    app, plan = App.objects.get(slug="demo"), Plan.objects.get(slug="micro")
    persist = needs_rows(steps)

    durations: dict[str, list[float]] = {name: [] for name in steps}
    started = time.monotonic()
    for _ in range(signups):
        target = make_target(organization=organization, app=app, plan=plan, persist=persist)
        for name, seconds in run_direct(target, steps).items():
            durations[name].append(seconds)
    elapsed = time.monotonic() - started
    harness.remove_deployment_resources()
    return {
        "seconds": elapsed,
        "sites_per_minute": 60 * signups / elapsed,
        "step_medians": {name: median(values) for name, values in durations.items()},
    }


def profile_one_worker(api: harness.Gunicorn, env: dict) -> dict[str, Any]:
    """Profile a single worker with py-spy while it drains ``PROFILE_SIGNUPS`` signups."""
    harness.reset_state()
    _, raw_key = harness.make_organization("bench-rush-profile")
    with harness.Workers(count=1, name="rush-profile-worker", env=env) as workers:
        profiler = harness.Profile(pid=workers.pids[0], name="rush-worker")
        if not profiler.start():
            return {}
        submit_signups(api.url, raw_key, PROFILE_SIGNUPS)
        harness.wait_until(
            lambda: (
                site_counts().get("running", 0) + site_counts().get("failed", 0) >= PROFILE_SIGNUPS
            ),
            timeout=RUSH_TIMEOUT_SECONDS,
        )
        summary = profiler.stop()
    harness.remove_deployment_resources()
    return summary


def run() -> dict[str, Any]:
    harness.setup_django()
    from provisioning.drivers import registry

    steps = create_steps()
    harness.reset_state()
    harness.ensure_demo_images()
    registry.runtime().ensure_network()

    edge = EdgeStack.for_steps(steps)
    with edge, harness.Gunicorn(name="rush-api", env=edge.env()) as api:
        loops = [plain_loop(SIGNUPS, steps)]
        rushes = [rush(api, count, SIGNUPS, edge.env()) for count in WORKER_COUNTS]
        loops.append(plain_loop(SIGNUPS, steps))
        loop_rate = sum(loop["sites_per_minute"] for loop in loops) / len(loops)
        for result in rushes:
            result["ratio"] = ratio(result["sites_per_minute"], loop_rate)

        profile: dict[str, Any] = {}
        if rushes[0]["ratio"] < PROFILE_BELOW:
            profile = profile_one_worker(api, edge.env())

    figures = {"loops": loops, "loop_rate": loop_rate, "rushes": rushes, "profile": profile}
    figures["section"] = render(figures, steps)
    return figures


def render(figures: dict, steps: list[str]) -> str:
    loops = figures["loops"]
    rows = [
        (
            result["workers"],
            fmt(result["sites_per_minute"], 1),
            fmt(result["ratio"]),
            fmt(result["seconds"], 1),
            fmt(result["submit_seconds"], 1),
            result["failed"] + result["unfinished"] + sum(result["rejected"].values()),
        )
        for result in figures["rushes"]
    ]
    lines = [
        "## 2. Semester rush",
        "",
        f"{SIGNUPS} signups sent through the API (gunicorn, {CLIENT_THREADS} client threads) at "
        f"once, plan `micro`, {SITES_PER_CUSTOMER} sites per customer; the time runs from the "
        "first request until every site's status is `running`. Baseline: the primitives of "
        f"`{', '.join(steps)}` for {SIGNUPS} sites in a plain loop in one process, run before "
        f"and after the rushes: {fmt(loops[0]['sites_per_minute'], 1)} and "
        f"{fmt(loops[-1]['sites_per_minute'], 1)} sites/min, mean "
        f"{fmt(figures['loop_rate'], 1)}.",
        "",
        harness.markdown_table(
            ["worker processes", "sites/min", "ratio to loop", "total s", "submit s", "failures"],
            rows,
        ),
    ]
    lines += [
        "",
        "Median seconds per step: the plain loop (first run) against the steps as the workers "
        "recorded them; a step slower under the workers shares the engine and the 2 cores with "
        "the other workers.",
        "",
        harness.markdown_table(
            ["step", "loop", *[f"{r['workers']} worker(s)" for r in figures["rushes"]]],
            [
                (
                    name,
                    fmt(loops[0]["step_medians"].get(name, float("nan")), 3),
                    *[fmt(r["step_medians"].get(name, float("nan")), 3) for r in figures["rushes"]],
                )
                for name in steps
            ],
        ),
    ]
    failures = [r for r in figures["rushes"] if r["failed"] or r["unfinished"] or r["rejected"]]
    for result in failures:
        lines += [
            "",
            f"Failures with {result['workers']} workers: {result['failed']} failed sites, "
            f"{result['unfinished']} not running after {RUSH_TIMEOUT_SECONDS:.0f} s, rejected "
            f"requests by status {result['rejected']}.",
        ]
    if figures["profile"]:
        lines += [
            "",
            f"py-spy profile of one worker draining {PROFILE_SIGNUPS} signups: busy in "
            f"{fmt(figures['profile']['busy_percent'], 0)}% of samples; each busy sample is "
            "attributed to its deepest project frame and the library call below it.",
            "",
            harness.profile_table(figures["profile"]),
        ]
    return "\n".join(lines)


def main() -> None:
    harness.write_result("rush", run())


if __name__ == "__main__":
    main()
