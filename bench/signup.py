"""Signup to site: from ``POST /api/v1/sites`` to the site's first 200, against the primitives.

Each sample is one signup through gunicorn and one real Celery worker (``--pool=solo``),
timed from the request to the first 200 from the site. Its baseline, measured
alternately with it in the same run, is the create operation's steps done directly
(see ``bench.primitives``). When sites are served over HTTPS through the edge, the
same run also times custom domains against their primitives (see
``bench.custom_domain``). Run alone with ``python -m bench.signup``.
"""

import os
import time
from datetime import datetime
from typing import Any

import requests
from docker.errors import DockerException

from bench import custom_domain, harness
from bench.edge import EdgeStack, create_steps
from bench.harness import fmt, median, percentile, ratio
from bench.primitives import critical_path, make_target, needs_rows, run_direct
from provisioning.errors import ProvisioningError

SITES = int(os.environ.get("BENCH_SIGNUP_SITES", "30"))
WARMUP_SITES = 2
PROFILE_SITES = 5
TARGET_RATIO = 1.25
OBSERVE_POLL_SECONDS = 0.02
LOOKUP_POLL_SECONDS = 0.1
SITE_TIMEOUT_SECONDS = 60.0
# A step sample above this many seconds (and 5 x the step's median) counts as an outlier.
OUTLIER_SECONDS = 0.1
# Failed samples (no 200 in time, engine error) are reported and skipped, up to this many.
MAX_ERRORS = 4


def _seconds_between(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return float("nan")
    return (end - start).total_seconds()


def sign_up_through_api(session: requests.Session, api_url: str, edge: EdgeStack) -> dict[str, Any]:
    """Sign up one site and wait for its first 200; return the timings of this sample."""
    from provisioning.drivers import registry

    runtime = registry.runtime()
    email = f"signup-{time.time_ns()}@bench.hostyard.test"
    wall_start = time.time()
    started = time.monotonic()
    answer = session.post(
        f"{api_url}/api/v1/sites",
        json={"customer_email": email, "app": "demo", "plan": "micro"},
        timeout=30,
    )
    post_seconds = time.monotonic() - started
    if answer.status_code != 202:
        raise harness.BenchError(f"POST /api/v1/sites returned {answer.status_code}: {answer.text}")
    body = answer.json()
    site_uuid, hostname = body["id"], body["hostname"]

    address, next_lookup = "", 0.0
    deadline = started + SITE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not address and time.monotonic() >= next_lookup:
            address = _container_address(runtime, site_uuid)
            next_lookup = time.monotonic() + LOOKUP_POLL_SECONDS
        if edge.probe(hostname=hostname, address=address, port=8080):
            break
        time.sleep(OBSERVE_POLL_SECONDS)
    else:
        raise harness.BenchError(
            f"site {hostname} returned no 200 within {SITE_TIMEOUT_SECONDS:.0f} s"
        )
    total = time.monotonic() - started

    sample = {"site": site_uuid, "total": total, "post": post_seconds}
    sample.update(_operation_breakdown(site_uuid, wall_start))
    runtime.remove_container(site_uuid=site_uuid)
    runtime.remove_volume(site_uuid=site_uuid)
    return sample


def _container_address(runtime: Any, site_uuid: str) -> str:
    """Return the site's container address, or "" while it has none or the lookup failed."""
    from provisioning.errors import ProvisioningError

    try:
        container = runtime.find_container(site_uuid)
    except ProvisioningError:
        # The docker SDK lists matching containers and then inspects each one, so a
        # container removed in between makes the lookup raise. The next poll looks again.
        return ""
    return runtime.container_address(container) if container is not None else ""


def _operation_breakdown(site_uuid: str, wall_start: float) -> dict[str, Any]:
    """Read the create operation's timings once it has finished (at most 30 s later)."""
    from provisioning.models import Operation, OperationStatus

    operation = Operation.objects.get(site__uuid=site_uuid)
    harness.wait_until(
        lambda: Operation.objects.filter(
            pk=operation.pk, status__in=OperationStatus.final()
        ).exists(),
        timeout=30,
        interval=0.05,
    )
    operation.refresh_from_db()
    steps = {step.name: step.duration_ms / 1000 for step in operation.steps.all()}
    run_seconds = _seconds_between(operation.started_at, operation.finished_at)
    start = datetime.fromtimestamp(wall_start, tz=operation.created_at.tzinfo)
    return {
        "status": operation.status,
        "dispatch": _seconds_between(operation.created_at, operation.started_at),
        "steps": steps,
        "runner": run_seconds - sum(steps.values()),
        "to_running": _seconds_between(start, operation.finished_at),
    }


def sign_up_directly(
    organization: Any, app: Any, plan: Any, steps: list[str], edge: EdgeStack
) -> dict[str, Any]:
    """Run the primitives for one site and wait for its first 200; return the timings.

    The wait for the first 200 is observed exactly as for a signup through the API
    and counts as a final part, ``first_200``, after the last step.
    """
    from provisioning.drivers import registry

    target = make_target(organization=organization, app=app, plan=plan, persist=needs_rows(steps))
    durations = run_direct(target, steps)

    started = time.monotonic()
    deadline = started + SITE_TIMEOUT_SECONDS
    port = target.spec.internal_port
    while not edge.probe(hostname=target.site.hostname, address=target.address, port=port):
        if time.monotonic() > deadline:
            raise harness.BenchError(f"site {target.site.hostname} returned no 200 in time")
        time.sleep(OBSERVE_POLL_SECONDS)
    durations["first_200"] = time.monotonic() - started
    steps = [*steps, "first_200"]

    runtime = registry.runtime()
    runtime.remove_container(site_uuid=target.site_uuid)
    runtime.remove_volume(site_uuid=target.site_uuid)
    return {
        "steps": durations,
        "sum": sum(durations.values()),
        "critical_path": critical_path(durations, steps),
    }


def run() -> dict[str, Any]:
    harness.setup_django()
    from hosting.models import App, Plan
    from provisioning.drivers import registry

    steps = create_steps()
    harness.reset_state()
    harness.ensure_demo_images()
    organization, raw_key = harness.make_organization("bench-signup")
    app, plan = App.objects.get(slug="demo"), Plan.objects.get(slug="micro")
    registry.runtime().ensure_network()

    edge = EdgeStack.for_steps(steps)
    with edge:
        with (
            harness.Gunicorn(name="signup-api", env=edge.env()) as api,
            harness.Workers(count=1, name="signup-worker", env=edge.env()) as workers,
        ):
            session = requests.Session()
            session.headers["Authorization"] = f"Api-Key {raw_key}"
            through_api, direct, errors = collect_samples(
                session, api.url, edge, (organization, app, plan), steps
            )
            figures = summarize(through_api, direct, steps)
            figures["errors"] = errors
            if edge.routes_https:
                figures["custom_domain"] = custom_domain.collect(session, api.url, edge)
            profile: dict[str, Any] = {}
            if figures["ratio_sum"] > TARGET_RATIO:
                profiler = harness.Profile(pid=workers.pids[0], name="signup-worker")
                if profiler.start():
                    for _ in range(PROFILE_SITES):
                        sign_up_through_api(session, api.url, edge)
                    profile = profiler.stop()
        # The worker has stopped, so the operation's task message waits unconsumed.
        figures["in_process"] = run_one_in_process(organization, app, plan)

    harness.remove_deployment_resources()
    figures["profile"] = profile
    figures["verdict"] = verdict_text(figures, overhead_rows(through_api, direct, steps))
    figures["section"] = render(figures, through_api, direct, steps, edge.describe())
    if figures.get("custom_domain"):
        figures["section"] += "\n\n" + custom_domain.render(figures["custom_domain"])
    return figures


def collect_samples(
    session: requests.Session, api_url: str, edge: EdgeStack, catalog: tuple, steps: list[str]
) -> tuple[list[dict], list[dict], list[str]]:
    """Alternate signups through the API and direct runs; return both and the errors met."""
    organization, app, plan = catalog
    for _ in range(WARMUP_SITES):
        sign_up_through_api(session, api_url, edge)
        sign_up_directly(organization, app, plan, steps, edge)

    through_api, direct, errors = [], [], []
    # Alternate the two so that noise from other load hits both alike.
    for _ in range(SITES):
        try:
            through_api.append(sign_up_through_api(session, api_url, edge))
            direct.append(sign_up_directly(organization, app, plan, steps, edge))
        except (harness.BenchError, ProvisioningError, DockerException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            if len(errors) > MAX_ERRORS:
                raise
    return through_api, direct, errors


def run_one_in_process(organization: Any, app: Any, plan: Any) -> dict[str, Any]:
    """Run one create operation in this process and count the SQL queries the runner makes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from hosting.services import sign_up_site
    from provisioning.drivers import registry
    from provisioning.engine.runner import run_operation

    site, operation = sign_up_site(
        organization=organization,
        customer_email=f"in-process-{time.time_ns()}@bench.hostyard.test",
        app=app,
        plan=plan,
    )
    started = time.monotonic()
    with CaptureQueriesContext(connection) as captured:
        outcome = run_operation(operation.pk)
    elapsed = time.monotonic() - started
    harness.flush_broker()

    step_seconds = sum(step.duration_ms for step in operation.steps.all()) / 1000
    registry.runtime().remove_container(site_uuid=str(site.uuid))
    registry.runtime().remove_volume(site_uuid=str(site.uuid))
    return {
        "outcome": outcome.outcome.value,
        "queries": len(captured.captured_queries),
        "database_seconds": sum(float(query["time"]) for query in captured.captured_queries),
        "seconds": elapsed,
        "step_seconds": step_seconds,
    }


def summarize(through_api: list[dict], direct: list[dict], steps: list[str]) -> dict[str, Any]:
    totals = [sample["total"] for sample in through_api]
    sums = [sample["sum"] for sample in direct]
    paths = [sample["critical_path"] for sample in direct]
    failures = [s["site"] for s in through_api if s["status"] != "succeeded"]
    return {
        "sites": len(through_api),
        "steps": steps,
        "failures": failures,
        "api_median": median(totals),
        "api_p95": percentile(totals, 95),
        "sum_median": median(sums),
        "sum_p95": percentile(sums, 95),
        "path_median": median(paths),
        "path_p95": percentile(paths, 95),
        "ratio_sum": ratio(median(totals), median(sums)),
        "ratio_sum_p95": ratio(percentile(totals, 95), percentile(sums, 95)),
        "ratio_path": ratio(median(totals), median(paths)),
        "ratio_path_p95": ratio(percentile(totals, 95), percentile(paths, 95)),
        "samples_api": through_api,
        "samples_direct": direct,
    }


def overhead_rows(through_api: list[dict], direct: list[dict], steps: list[str]) -> list[tuple]:
    """Return (part, control plane s, direct s, difference s) medians, largest difference first."""
    rows = [
        ("POST /api/v1/sites round trip", median([s["post"] for s in through_api]), 0.0),
        ("commit to worker claim", median([s["dispatch"] for s in through_api]), 0.0),
        ("runner bookkeeping between steps", median([s["runner"] for s in through_api]), 0.0),
        (
            "last step to first 200 (negative: 200 seen before the operation ended)",
            median([s["total"] - s["to_running"] for s in through_api]),
            median([s["steps"]["first_200"] for s in direct]),
        ),
    ]
    for name in steps:
        api_step = median([s["steps"].get(name, float("nan")) for s in through_api])
        rows.append((f"step {name}", api_step, median([s["steps"][name] for s in direct])))
    table = [(part, value, base, value - base) for part, value, base in rows]
    return sorted(table, key=lambda row: row[3], reverse=True)


def outlier_lines(through_api: list[dict], direct: list[dict], steps: list[str]) -> list[str]:
    """Name steps whose time is bimodal: samples over 5 x the step's median and over 0.1 s."""
    lines = []
    for name in steps:
        api_values = [s["steps"][name] for s in through_api if name in s["steps"]]
        direct_values = [s["steps"][name] for s in direct if name in s["steps"]]
        limit = max(OUTLIER_SECONDS, 5 * median(api_values + direct_values))
        slow_api = [value for value in api_values if value > limit]
        slow_direct = [value for value in direct_values if value > limit]
        if not slow_api and not slow_direct:
            continue
        lines.append(
            f"- `{name}` took over {fmt(limit, 3)} s in {len(slow_api)} of {len(api_values)} "
            f"signups and {len(slow_direct)} of {len(direct_values)} direct runs (longest "
            f"{fmt(max(slow_api + slow_direct), 3)} s); with a bimodal step, the median ratio "
            "moves with how many slow samples each side drew."
        )
    return lines


def verdict_text(figures: dict, rows: list[tuple]) -> str:
    """Say whether the target is met; if not, name the parts that account for the excess."""
    if figures["ratio_sum"] <= TARGET_RATIO:
        return f"met (median ratio {fmt(figures['ratio_sum'])} <= {TARGET_RATIO})"

    excess = figures["api_median"] - TARGET_RATIO * figures["sum_median"]
    named, covered = [], 0.0
    for part, _, _, difference in rows:
        if covered >= excess or difference <= 0:
            break
        named.append(f"{part} (+{fmt(difference, 3)} s)")
        covered += difference
    text = (
        f"not met: median ratio {fmt(figures['ratio_sum'])}, {fmt(excess, 3)} s per site above "
        f"{TARGET_RATIO} x the primitives. The parts that account for it, largest first: "
        + "; ".join(named)
    )
    if covered < excess:
        text += (
            f"; the remaining {fmt(excess - covered, 3)} s belongs to no measured part "
            "(parts are medians, so they do not add up exactly)"
        )
    in_process = figures.get("in_process")
    if in_process:
        outside_steps = in_process["seconds"] - in_process["step_seconds"]
        text += (
            f". In one operation run in-process, {fmt(outside_steps, 3)} s went outside the "
            f"steps; its {in_process['queries']} SQL queries took "
            f"{fmt(in_process['database_seconds'], 3)} s of that"
        )
    return text


def render(
    figures: dict, through_api: list[dict], direct: list[dict], steps: list[str], probe: str
) -> str:
    rows = overhead_rows(through_api, direct, steps)
    verdict = verdict_text(figures, rows)
    lines = [
        "## 1. Signup to site",
        "",
        f"{figures['sites']} sites, one at a time, through gunicorn (2 workers) and one Celery "
        f"worker (`--pool=solo`), alternating with the same steps done directly. Create steps: "
        f"`{', '.join(steps)}`. First 200 is observed by {probe}, polled every "
        f"{int(OBSERVE_POLL_SECONDS * 1000)} ms. Failed operations: {len(figures['failures'])}; "
        f"samples lost to errors: {len(figures.get('errors', []))}.",
        "",
        harness.markdown_table(
            ["figure", "median s", "p95 s", "ratio median", "ratio p95"],
            [
                (
                    "POST to first 200 (control plane)",
                    fmt(figures["api_median"], 3),
                    fmt(figures["api_p95"], 3),
                    "",
                    "",
                ),
                (
                    "primitives, sequential sum",
                    fmt(figures["sum_median"], 3),
                    fmt(figures["sum_p95"], 3),
                    fmt(figures["ratio_sum"]),
                    fmt(figures["ratio_sum_p95"]),
                ),
                (
                    "primitives, critical path",
                    fmt(figures["path_median"], 3),
                    fmt(figures["path_p95"], 3),
                    fmt(figures["ratio_path"]),
                    fmt(figures["ratio_path_p95"]),
                ),
            ],
        ),  # fmt: skip
        "",
        f"Target (control-plane time at most {TARGET_RATIO} x the primitives): {verdict}.",
        "",
        "Where the time goes (medians per site; parts overlap with the observer's polling, "
        "so they need not add up to the total):",
        "",
        harness.markdown_table(
            ["part", "control plane s", "direct s", "difference s"],
            [(part, fmt(value, 3), fmt(base, 3), fmt(diff, 3)) for part, value, base, diff in rows],
        ),
    ]
    for error in figures.get("errors", []):
        lines += ["", f"- sample error: `{error[:300]}`"]
    outliers = outlier_lines(through_api, direct, steps)
    if outliers:
        lines += ["", "Steps with slow outliers:", "", *outliers]
    in_process = figures.get("in_process")
    if in_process:
        lines += [
            "",
            "One more create operation, run in the benchmark's process "
            f"({in_process['outcome']}), took {fmt(in_process['seconds'], 3)} s, of which its "
            f"steps took {fmt(in_process['step_seconds'], 3)} s. It made "
            f"{in_process['queries']} SQL queries, {fmt(in_process['database_seconds'], 3)} s "
            "in all by Django's own timing.",
        ]
    if figures.get("profile"):
        lines += [
            "",
            f"py-spy profile of the worker over {PROFILE_SITES} more signups: busy in "
            f"{fmt(figures['profile']['busy_percent'], 0)}% of samples; each busy sample is "
            "attributed to its deepest project frame and the library call below it.",
            "",
            harness.profile_table(figures["profile"]),
        ]
    return "\n".join(lines)


def main() -> None:
    harness.write_result("signup", run())


if __name__ == "__main__":
    main()
