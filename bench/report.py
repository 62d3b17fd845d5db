"""Write bench/README.md from bench/results/: machine, versions, command, date, every section.

Usage: ``python -m bench.report "<command that ran the benchmarks>"``.
"""

import json
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from statistics import median
from typing import Any

from bench import harness
from bench.harness import RESULTS_DIR, fmt

BENCHMARKS = ("signup", "rush", "api_load", "memory")
SCANS = ("reconciler", "usage_scan")
README = harness.BENCH_DIR / "README.md"


def command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> list[tuple[str, str]]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory = command_output(["free", "-h"]).splitlines()
    total = memory[1].split()[1] if len(memory) > 1 else "unknown"
    return [
        ("cores (`nproc`)", command_output(["nproc"])),
        ("CPU", cpu_model),
        ("memory (`free -h`, total)", total),
        ("kernel", platform.release()),
        ("load average when the report was written", Path("/proc/loadavg").read_text()[:14]),
    ]


def versions() -> list[tuple[str, str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    import redis
    from django.conf import settings

    redis_info = redis.Redis.from_url(settings.CELERY_BROKER_URL).info("server")
    engine = harness.docker_client().version()
    packages = ("Django", "djangorestframework", "celery", "gunicorn", "docker", "py-spy")
    rows = [("Python", sys.version.split()[0])]
    for package in packages:
        try:
            rows.append((package, version(package)))
        except Exception:  # noqa: BLE001 - a missing optional tool is reported as such
            rows.append((package, "not installed"))
    wrk = shutil.which("wrk")
    wrk_version = command_output([wrk, "-v"]).split()[1] if wrk else "not installed"
    rows += [
        ("Docker Engine", f"{engine.get('Version')} (API {engine.get('ApiVersion')})"),
        ("PostgreSQL", postgres),
        ("Redis", redis_info.get("redis_version", "unknown")),
        ("wrk", wrk_version),
    ]
    return rows


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def headline_rows(results: dict[str, dict | None]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    signup = results.get("signup")
    if signup:
        rows.append(
            (
                "1. signup to first 200, median (p95)",
                f"{fmt(signup['api_median'], 3)} s ({fmt(signup['api_p95'], 3)} s)",
                f"{fmt(signup['ratio_sum'])} ({fmt(signup['ratio_sum_p95'])}) x sequential sum; "
                f"{fmt(signup['ratio_path'])} ({fmt(signup['ratio_path_p95'])}) x critical path",
            )
        )
        domain = signup.get("custom_domain")
        if domain:
            rows.append(
                (
                    "1b. custom domain to first HTTPS 200, median (p95)",
                    f"{fmt(domain['api_median'], 3)} s ({fmt(domain['api_p95'], 3)} s)",
                    f"{fmt(domain['ratio'])} ({fmt(domain['ratio_p95'])}) x primitives' sum",
                )
            )
    rush = results.get("rush")
    if rush:
        for result in rush["rushes"]:
            rows.append(
                (
                    f"2. rush of {result['signups']}, {result['workers']} worker(s)",
                    f"{fmt(result['sites_per_minute'], 1)} sites/min",
                    f"{fmt(result['ratio'])} x plain loop ({fmt(rush['loop_rate'], 1)} sites/min)",
                )
            )
    api = results.get("api_load")
    if api:
        for row in api["rows"]:
            rows.append(
                (
                    f"3. {row['name']}",
                    f"{fmt(row['target']['rps'], 0)} req/s, p50 {fmt(row['target']['p50_ms'], 1)}"
                    f" ms, p99 {fmt(row['target']['p99_ms'], 1)} ms",
                    f"{fmt(row['rps_ratio'])} x ping req/s",
                )
            )
    memory = results.get("memory")
    if memory:
        final = memory["samples"][-1]
        rows.append(
            (
                f"5. worker RSS after {final['operations']:,} operations",
                f"{fmt(final['rss_kib'] / 1024, 1)} MiB",
                f"{fmt(memory['rss_ratio'], 3)} x after 10",
            )
        )
    return rows


# Explanations of profile places whose code line the name does not show. Checked
# against hosting/services.py and the EXPLAIN output of the API benchmark.
KNOWN_PLACES = {
    "sign_up_site (hosting/services.py) -> QuerySet.get (django)": (
        "the `select_for_update()` on the organization row, so signups of one organization "
        "wait for each other (wrk sends every POST for the same organization)"
    ),
    "CursorPagination.paginate_queryset (rest_framework/pagination.py) -> QuerySet.__iter__ "
    "(django)": (
        "the page query and the building of its 50 rows. The index `site_org_newest_idx` "
        "on `(organization, -created_at, -id)` serves the page without a sort (see the "
        "EXPLAIN table). Before the index, PostgreSQL sorted every site of the "
        "organization, taking 12.6 ms per page at 10,000 sites, and the list ran at "
        "77 req/s (0.03 x ping)"
    ),
}


def profile_line(figure: str, profile: dict[str, Any]) -> str:
    place, share = profile["places"][0]
    line = f"- {figure}: `{place}` takes {fmt(share, 0)}% of the busy samples."
    if place in KNOWN_PLACES:
        line += f" That place is {KNOWN_PLACES[place]}."
    if profile.get("leaf_libraries"):
        library, library_share = profile["leaf_libraries"][0]
        line += f" The innermost frame is in {library} for {fmt(library_share, 0)}% of them."
    return line


def custom_domain_line(domain: dict[str, Any]) -> str:
    """Explain the custom domain ratio by comparing samples of like issuance time.

    Certificate issuance against Pebble takes either about 1.1 s or about 1.6 s on
    both sides, so medians taken from different clusters mislead. Samples are split
    at the midpoint between the fastest and the slowest direct sum.
    """
    api = sorted(sample["total"] for sample in domain["samples_api"])
    direct = sorted(sample["sum"] for sample in domain["samples_direct"])
    line = f"- Custom domain: median ratio {fmt(domain['ratio'])} x the primitives' sum."
    if not api or not direct:
        return line
    split = (direct[0] + direct[-1]) / 2
    parts = []
    for name, low, high in (
        ("fast", [t for t in api if t < split], [t for t in direct if t < split]),
        ("slow", [t for t in api if t >= split], [t for t in direct if t >= split]),
    ):
        if low and high:
            parts.append(
                f"{name} issuances: {len(low)} API and {len(high)} direct samples, ratio "
                f"{fmt(median(low) / median(high))}"
            )
    if parts:
        line += (
            " Issuance falls into two clusters on both sides (split at "
            f"{fmt(split, 2)} s); within each cluster: " + "; ".join(parts) + "."
        )
    return line


def dominant_lines(results: dict[str, dict | None]) -> list[str]:
    """List, per profiled figure, the place and library that take most of the samples."""
    lines: list[str] = []
    signup = results.get("signup")
    if signup:
        lines.append(f"- Signup target of 1.25 x the primitives: {signup.get('verdict', 'n/a')}.")
        if signup.get("profile"):
            lines.append(profile_line("Signup worker", signup["profile"]))
        if signup.get("custom_domain"):
            lines.append(custom_domain_line(signup["custom_domain"]))
    rush = results.get("rush")
    if rush and rush.get("profile"):
        lines.append(profile_line("Rush, one worker", rush["profile"]))
    api = results.get("api_load")
    if api:
        for name, profile in api.get("profiles", {}).items():
            if profile and profile.get("places"):
                lines.append(profile_line(f"`{name}` under wrk", profile))
    return lines


def scan_section() -> list[str]:
    lines = ["## 4. Control-plane scans", ""]
    for name in SCANS:
        output = RESULTS_DIR / f"{name}.txt"
        result = load(name)
        if not (harness.BENCH_DIR / f"{name}.py").exists():
            lines.append(f"- `bench/{name}.py` is absent in this checkout: skipped.")
        elif result is not None and "section" in result:
            lines += [result["section"], "", f"_Finished {result.get('finished_at', '')}._"]
        elif output.exists():
            tail = "\n".join(output.read_text(errors="replace").splitlines()[-40:])
            lines += [f"`python -m bench.{name}` printed (last 40 lines):", "", "```", tail, "```"]
        else:
            lines.append(f"- `bench/{name}.py` exists but `bench/run` did not run it this time.")
        lines.append("")
    return lines


def render(command: str) -> str:
    results = {name: load(name) for name in BENCHMARKS}
    lines = [
        "# Benchmarks",
        "",
        "Latest results of `bench/run`. Each figure is a ratio against a baseline measured in "
        "the same run on the same machine, because the machine is shared and its load varies; "
        "absolute times are shown for context only. A benchmark that did not run this time "
        "says so below.",
        "",
        f"- command: `{command}`",
        f"- written: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        harness.markdown_table(["machine", ""], machine()),
        "",
        harness.markdown_table(["software", "version"], versions()),
        "",
        "## Summary",
        "",
        harness.markdown_table(["figure", "value", "against its baseline"], headline_rows(results)),
        "",
        "## What dominates",
        "",
        "From the profiles and breakdowns below, written by `bench/report.py` from this run:",
        "",
        *dominant_lines(results),
        "",
    ]
    for name in BENCHMARKS:
        if name == "memory":
            lines += scan_section()
        result = results[name]
        if result is None:
            lines += [f"## {name}", "", "Did not run or failed; see its output from bench/run.", ""]
            continue
        lines += [result["section"], "", f"_Finished {result['finished_at']}._", ""]
    lines += [
        "## How to run",
        "",
        "`bench/run` installs wrk (apt-get) and py-spy (into .venv), creates and migrates the "
        "`hostyard_bench` database if needed, runs every benchmark, then writes this file. "
        "`bench/run signup` runs one; `python -m bench.signup` (or `rush`, `api_load`, "
        "`memory`) runs one without rewriting this file. Containers carry the deployment label "
        "`bench` and are removed afterwards. Logs and profiles go to `.run/bench/`.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    harness.setup_django()
    command = sys.argv[1] if len(sys.argv) > 1 else "bench/run"
    README.write_text(render(command))
    print(f"wrote {README}")


if __name__ == "__main__":
    main()
