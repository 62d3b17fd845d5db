"""API under load: ``GET /api/v1/sites`` with 1,000 and 10,000 sites, and ``POST /api/v1/sites``.

wrk drives gunicorn from a separate process. The baseline is ``GET /bench/ping``, a DRF
view with no authentication and no query, served by the same gunicorn and measured
right before each run of an endpoint. Site rows are bulk-inserted. ``POST`` runs with
no Celery worker consuming the benchmark's Redis database, so no container is
created; the queued messages are purged afterwards. Run alone with
``python -m bench.api_load``.
"""

import os
import re
import shutil
import subprocess
import time
from typing import Any

from bench import harness
from bench.harness import fmt, median, ratio

DURATION_SECONDS = int(os.environ.get("BENCH_API_SECONDS", "4"))
# Each endpoint is measured this many times, each time right after the ping; medians count.
ROUNDS = 3
WRK_THREADS = 2
WRK_CONNECTIONS = 8
# Gunicorn's documented starting point for sync workers: 2 x cores + 1.
GUNICORN_WORKERS = 2 * (os.cpu_count() or 1) + 1
SITE_COUNTS = (1_000, 10_000)
CUSTOMERS = 50
# An endpoint whose requests per second fall below this share of the ping's is profiled.
PROFILE_BELOW = 0.5

POST_SCRIPT = """
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end
function init(args)
  counter = 0
end
function request()
  counter = counter + 1
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["Content-Type"] = "application/json"
  local body = string.format(
    '{"customer_email":"load-%s-%d-%d@bench.hostyard.test","app":"demo","plan":"micro"}',
    "RUN", tid, counter)
  return wrk.format("POST", nil, headers, body)
end
"""

UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(output: str) -> dict[str, float]:
    """Read requests/s, p50 and p99 latency (ms), and error counts from ``wrk --latency`` output."""

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        return (
            float(match.group(1)) * UNIT_SECONDS[match.group(2)] * 1000 if match else float("nan")
        )

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    requests_done = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors:.*", output)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "requests": int(requests_done.group(1)) if requests_done else 0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(0) if socket_errors else "",
    }


def run_wrk(
    url: str, *, raw_key: str = "", script: str | None = None, seconds: int = DURATION_SECONDS
) -> dict[str, Any]:
    """Drive ``url`` with wrk for ``seconds``; return the parsed figures and the raw output."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise harness.BenchError(
            "wrk is not installed; run bench/run, which installs it with apt-get"
        )
    argv = [wrk, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if raw_key:
        argv += ["-H", f"Authorization: Api-Key {raw_key}"]
    if script:
        argv += ["-s", script]
    argv.append(url)
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    return {**parse_wrk(completed.stdout), "output": completed.stdout}


def insert_sites(organization: Any, count: int) -> None:
    """Bulk-insert running sites until the organization has ``count`` of them."""
    from hosting.models import App, Customer, Plan, Site
    from hosting.services import hostname_for

    app, plan = App.objects.get(slug="demo"), Plan.objects.get(slug="micro")
    customers = list(Customer.objects.filter(organization=organization))
    if not customers:
        customers = Customer.objects.bulk_create(
            Customer(organization=organization, email=f"owner-{i}@bench.hostyard.test")
            for i in range(CUSTOMERS)
        )
    existing = Site.objects.filter(organization=organization).count()
    Site.objects.bulk_create(
        (
            Site(
                organization=organization,
                customer=customers[i % len(customers)],
                plan=plan,
                app=app,
                app_version=app.default_version,
                label=f"load-{i:06d}",
                hostname=hostname_for(f"load-{i:06d}"),
                status="running",
            )
            for i in range(existing, count)
        ),
        batch_size=1000,
    )


def queries_per_request(raw_key: str, path: str) -> int:
    """Count the SQL queries one request to ``path`` runs, through Django's test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    with CaptureQueriesContext(connection) as captured:
        client.get(path)
    return len(captured.captured_queries)


def explain_first_page(organization: Any) -> dict[str, str]:
    """EXPLAIN ANALYZE the first page of the site list; return its top plan line and run time."""
    from hosting.api.pagination import SitePagination
    from hosting.models import Site

    page = (
        Site.objects.filter(organization=organization)
        .select_related("app", "plan", "customer")
        .order_by(*SitePagination.ordering)[: SitePagination.page_size or 50]
    )
    plan = page.explain(analyze=True).splitlines()
    sort = next((line.strip() for line in plan if "Sort Method" in line), "no sort")
    timing = next((line.strip() for line in plan if line.startswith("Execution Time")), "")
    return {"top": plan[0].strip(), "sort": sort, "execution": timing}


def measure(api: harness.Gunicorn, name: str, path: str, raw_key: str, script: str | None = None):
    """Alternate the ping and the endpoint ``ROUNDS`` times; return medians and their ratios."""
    pings, targets = [], []
    for _ in range(ROUNDS):
        pings.append(run_wrk(f"{api.url}/bench/ping"))
        targets.append(run_wrk(f"{api.url}{path}", raw_key=raw_key, script=script))
    ping, target = combine(pings), combine(targets)
    return {
        "name": name,
        "path": path,
        "ping": ping,
        "target": target,
        "rps_ratio": ratio(target["rps"], ping["rps"]),
        "p50_ratio": ratio(target["p50_ms"], ping["p50_ms"]),
        "p99_ratio": ratio(target["p99_ms"], ping["p99_ms"]),
    }


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the median of each figure over ``runs`` and the summed error counts."""
    return {
        "rps": median([run["rps"] for run in runs]),
        "p50_ms": median([run["p50_ms"] for run in runs]),
        "p99_ms": median([run["p99_ms"] for run in runs]),
        "requests": sum(run["requests"] for run in runs),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": [run["socket_errors"] for run in runs if run["socket_errors"]],
        "rounds": [{key: run[key] for key in ("rps", "p50_ms", "p99_ms")} for run in runs],
    }


def profile_endpoint(
    api: harness.Gunicorn, row: dict, raw_key: str, script: str | None
) -> dict[str, Any]:
    """Profile gunicorn's workers with py-spy while wrk drives the endpoint of ``row``."""
    assert api.process is not None
    profiler = harness.Profile(
        pid=api.process.pid, name=f"api-{row['name'].split()[0].lower()}", subprocesses=True
    )
    if not profiler.start():
        return {}
    run_wrk(f"{api.url}{row['path']}", raw_key=raw_key, script=script, seconds=2 * DURATION_SECONDS)
    return profiler.stop()


def run() -> dict[str, Any]:
    harness.setup_django()
    harness.reset_state()
    organization, raw_key = harness.make_organization("bench-api")
    script = harness.LOG_DIR / "post-sites.lua"
    script.write_text(POST_SCRIPT.replace("RUN", str(time.time_ns())))

    rows, queries, plans = [], {}, {}
    with harness.Gunicorn(name="api-load", workers=GUNICORN_WORKERS) as api:
        run_wrk(f"{api.url}/bench/ping", seconds=2)
        for count in SITE_COUNTS:
            insert_sites(organization, count)
            path = "/api/v1/sites"
            queries[f"GET {path} ({count:,} sites)"] = queries_per_request(raw_key, path)
            plans[f"{count:,} sites"] = explain_first_page(organization)
            run_wrk(f"{api.url}{path}", raw_key=raw_key, seconds=2)
            rows.append(measure(api, f"GET {path} ({count:,} sites)", path, raw_key))
        rows.append(measure(api, "GET /bench/ping-auth", "/bench/ping-auth", raw_key))
        rows.append(measure(api, "POST /api/v1/sites", "/api/v1/sites", raw_key, str(script)))
        harness.flush_broker()

        profiles = {}
        for row in rows:
            if row["rps_ratio"] < PROFILE_BELOW and row["path"] == "/api/v1/sites":
                is_post = row["name"].startswith("POST")
                profiles[row["name"]] = profile_endpoint(
                    api, row, raw_key, str(script) if is_post else None
                )
        harness.flush_broker()

    figures = {"rows": rows, "queries": queries, "plans": plans, "profiles": profiles}
    figures["section"] = render(figures)
    return figures


def render(figures: dict) -> str:
    table = [
        (
            row["name"],
            fmt(row["target"]["rps"], 0),
            fmt(row["ping"]["rps"], 0),
            fmt(row["rps_ratio"]),
            f"{fmt(row['target']['p50_ms'], 1)} / {fmt(row['target']['p99_ms'], 1)}",
            f"{fmt(row['ping']['p50_ms'], 1)} / {fmt(row['ping']['p99_ms'], 1)}",
            f"{fmt(row['p50_ratio'])} / {fmt(row['p99_ratio'])}",
            row["target"]["non_2xx"],
        )
        for row in figures["rows"]
    ]
    lines = [
        "## 3. API under load",
        "",
        f"wrk ({WRK_THREADS} threads, {WRK_CONNECTIONS} connections, {DURATION_SECONDS} s per "
        f"run, {ROUNDS} runs per figure, medians shown) against gunicorn with "
        f"{GUNICORN_WORKERS} sync workers, both on the same 2 cores. Baseline: "
        "`GET /bench/ping` (DRF view, no authentication, no query), measured right before "
        "each run of an endpoint. `POST` ran with no worker consuming the broker's Redis "
        "database, so nothing was provisioned; the queued messages were purged afterwards. "
        "List pages hold 50 sites.",
        "",
        harness.markdown_table(
            [
                "endpoint",
                "req/s",
                "ping req/s",
                "req/s ratio",
                "p50 / p99 ms",
                "ping p50 / p99 ms",
                "latency ratio p50 / p99",
                "non-2xx",
            ],
            table,
        ),  # fmt: skip
        "",
        "SQL queries per request (Django test client, same code path): "
        + ", ".join(f"{name}: {count}" for name, count in figures["queries"].items())
        + ".",
        "",
        "First page of the list, `EXPLAIN ANALYZE` (ordering `-created_at, -id` within the "
        "organization):",
        "",
        harness.markdown_table(
            ["rows", "top plan node", "sort", "execution"],
            [
                (name, f"`{plan['top']}`", f"`{plan['sort']}`", plan["execution"])
                for name, plan in figures["plans"].items()
            ],
        ),
    ]
    for name, profile in figures["profiles"].items():
        if not profile:
            continue
        lines += [
            "",
            f"py-spy profile of gunicorn under `{name}`: busy in "
            f"{fmt(profile['busy_percent'], 0)}% of samples (the rest wait for a request); each "
            "busy sample is attributed to its deepest project or DRF frame and the library call "
            "below it.",
            "",
            harness.profile_table(profile),
        ]
    return "\n".join(lines)


def main() -> None:
    harness.write_result("api_load", run())


if __name__ == "__main__":
    main()
