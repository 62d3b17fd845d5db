"""Worker memory: resident set size of one worker after 1,000 operations against after 10.

The operation is a real kind, ``terminate``, on sites whose rows exist but which
never got a container or volume. Each one runs the full path: task message, lease,
step rows and site transitions. Its steps call real servers, which find nothing to
remove: Caddy and Knot (started here when the create operation uses them) and the
Docker Engine (a labelled container listing and a volume lookup). The worker is
one ``--pool=solo`` Celery process, so tasks run in the process whose RSS is read
from ``/proc/<pid>/status``. Run alone with ``python -m bench.memory``.
"""

import os
import time
from typing import Any

from bench import harness
from bench.edge import EdgeStack, create_steps
from bench.harness import fmt, ratio

OPERATIONS = int(os.environ.get("BENCH_MEMORY_OPERATIONS", "1000"))
BASELINE_OPERATIONS = 10
CHECKPOINTS = tuple(
    sorted({n for n in (BASELINE_OPERATIONS, 100, 250, 500, OPERATIONS) if n <= OPERATIONS})
)
BATCH_TIMEOUT_SECONDS = 240.0
# Growth above this share of the baseline RSS is named in the report as a suspected leak.
GROWTH_WARNING = 1.10


def insert_sites(organization: Any, count: int) -> list[Any]:
    """Bulk-insert ``count`` running sites with no container; return them."""
    from hosting.models import App, Customer, Plan, Site
    from hosting.services import hostname_for

    app, plan = App.objects.get(slug="demo"), Plan.objects.get(slug="micro")
    customer = Customer.objects.create(organization=organization, email="memory@bench.test")
    return Site.objects.bulk_create(
        Site(
            organization=organization,
            customer=customer,
            plan=plan,
            app=app,
            app_version=app.default_version,
            label=f"memory-{index:05d}",
            hostname=hostname_for(f"memory-{index:05d}"),
            status="running",
        )
        for index in range(count)
    )


def finished_operations() -> int:
    from provisioning.models import Operation, OperationStatus

    return Operation.objects.filter(status__in=OperationStatus.final()).count()


def failed_operations() -> int:
    from provisioning.models import Operation, OperationStatus

    return Operation.objects.exclude(status=OperationStatus.SUCCEEDED).count()


def run() -> dict[str, Any]:
    harness.setup_django()
    from hosting.services import terminate_site
    from provisioning.engine.kinds import KINDS
    from provisioning.models import OperationKind

    harness.reset_state()
    organization, _ = harness.make_organization("bench-memory")
    sites = insert_sites(organization, OPERATIONS)

    samples: list[dict[str, Any]] = []
    edge = EdgeStack.for_steps(create_steps())
    with edge, harness.Workers(count=1, name="memory-worker", env=edge.env()) as workers:
        pid = workers.pids[0]
        samples.append({"operations": 0, "rss_kib": harness.rss_kib(pid), "seconds": 0.0})
        started = time.monotonic()
        done = 0
        for checkpoint in CHECKPOINTS:
            for site in sites[done:checkpoint]:
                terminate_site(site=site, requested_by="bench-memory")
            done = checkpoint
            if not harness.wait_until(
                lambda n=checkpoint: finished_operations() >= n,
                timeout=BATCH_TIMEOUT_SECONDS,
                interval=0.2,
            ):
                raise harness.BenchError(
                    f"only {finished_operations()} of {checkpoint} operations finished within "
                    f"{BATCH_TIMEOUT_SECONDS:.0f} s; see {harness.LOG_DIR}/memory-worker-0.log"
                )
            samples.append(
                {
                    "operations": checkpoint,
                    "rss_kib": harness.rss_kib(pid),
                    "seconds": time.monotonic() - started,
                }
            )

    failures = failed_operations()
    harness.reset_state()
    baseline = next(s for s in samples if s["operations"] == BASELINE_OPERATIONS)
    final = samples[-1]
    figures = {
        "steps": list(KINDS[OperationKind.TERMINATE].steps),
        "samples": samples,
        "failures": failures,
        "rss_ratio": ratio(final["rss_kib"], baseline["rss_kib"]),
        "growth_kib": final["rss_kib"] - baseline["rss_kib"],
        "operations_per_second": OPERATIONS / final["seconds"],
    }
    figures["section"] = render(figures)
    return figures


def render(figures: dict) -> str:
    samples = figures["samples"]
    growth = figures["growth_kib"]
    per_operation = growth * 1024 / (OPERATIONS - BASELINE_OPERATIONS)
    verdict = (
        f"above {GROWTH_WARNING:.2f}: the worker keeps about {fmt(per_operation, 0)} bytes per "
        "operation; look for a cache or a list that grows per task"
        if figures["rss_ratio"] > GROWTH_WARNING
        else f"within {GROWTH_WARNING:.2f} of the baseline: no growth per operation to report"
    )
    return "\n".join(
        [
            "## 5. Worker memory",
            "",
            f"One worker (`--pool=solo`) ran {OPERATIONS:,} `terminate` operations "
            f"(`{', '.join(figures['steps'])}`) on sites that have rows but no container. "
            "Each runs the whole engine path and real calls to Caddy, Knot and the Docker "
            "Engine that find nothing to remove "
            f"({fmt(figures['operations_per_second'], 1)} operations/s; failures: "
            f"{figures['failures']}). RSS read from `/proc/<pid>/status` after each batch.",
            "",
            harness.markdown_table(
                ["operations done", "RSS MiB", "ratio to after 10"],
                [
                    (
                        s["operations"],
                        fmt(s["rss_kib"] / 1024, 1),
                        fmt(ratio(s["rss_kib"], samples[1]["rss_kib"])),
                    )
                    for s in samples
                ],
            ),
            "",
            f"RSS after {OPERATIONS:,} against after {BASELINE_OPERATIONS}: "
            f"{fmt(figures['rss_ratio'], 3)} ({fmt(growth / 1024, 1)} MiB), {verdict}.",
        ]
    )


def main() -> None:
    harness.write_result("memory", run())


if __name__ == "__main__":
    main()
