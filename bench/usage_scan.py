"""Usage scan of 1,000 sites against the bare engine calls it needs.

Creates ``BENCH_USAGE_SITES`` Site rows (default 1,000), one labelled empty volume
each, and ``BENCH_USAGE_CONTAINERS`` running containers (default 10) so memory is
read too. Each round times ``scan_usage()`` and, next to it, the baseline: the bare
``df()`` plus the labelled container listing. The printed ratio is the median scan
time over the median baseline. Everything created is removed at the end, also
after an error. Run with ``python -m bench.usage_scan``; it needs
``DATABASE_URL`` and ``CELERY_BROKER_URL`` like the other benchmarks, but neither
is flushed.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import harness
from bench.harness import fmt, median, ratio

SITES = int(os.environ.get("BENCH_USAGE_SITES", "1000"))
CONTAINERS = int(os.environ.get("BENCH_USAGE_CONTAINERS", "10"))
ROUNDS = int(os.environ.get("BENCH_USAGE_ROUNDS", "5"))
DEPLOYMENT = "bench-usage"
ORGANIZATION_SLUG = "bench-usage"
THREADS = 8


def create_sites(count: int) -> list[Any]:
    """Insert ``count`` running sites of one organization and customer."""
    from hosting.catalog import load_catalog
    from hosting.models import App, Customer, Organization, Plan, Site, SiteStatus
    from provisioning.drivers.runtime.base import volume_name

    load_catalog()
    organization = Organization.objects.create(name="Usage benchmark", slug=ORGANIZATION_SLUG)
    customer = Customer.objects.create(organization=organization, email="bench@usage.test")
    app, plan = App.objects.get(slug="demo"), Plan.objects.get(slug="micro")
    sites = [
        Site(
            organization=organization,
            customer=customer,
            plan=plan,
            app=app,
            app_version="1.0",
            label=f"usage{index}",
            hostname=f"usage{index}.bench.test",
            status=SiteStatus.RUNNING,
        )
        for index in range(count)
    ]
    Site.objects.bulk_create(sites, batch_size=500)
    for site in sites:
        site.volume_name = volume_name(str(site.uuid))
    Site.objects.bulk_update(sites, ["volume_name"], batch_size=500)
    return sites


def create_engine_resources(client: Any, sites: list[Any], containers: int) -> None:
    """Create one labelled volume per site and a sleeping container for the first few."""
    from provisioning.drivers.runtime.base import container_name, site_labels

    def make_volume(site: Any) -> None:
        labels = site_labels(str(site.uuid), deployment=DEPLOYMENT, role="data")
        client.volumes.create(name=site.volume_name, labels=labels)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(make_volume, sites))

    for site in sites[:containers]:
        client.containers.run(
            "hostyard/busybox:1",
            ["sleep", "3600"],
            name=container_name(str(site.uuid)),
            labels=site_labels(str(site.uuid), deployment=DEPLOYMENT),
            volumes={site.volume_name: {"bind": "/data", "mode": "rw"}},
            network_mode="none",
            mem_limit="16m",
            detach=True,
        )


def bare_engine_calls(client: Any) -> float:
    """Time the two listing calls a scan cannot do without."""
    from provisioning.drivers.runtime.base import LABEL_DEPLOYMENT

    started = time.perf_counter()
    client.df()
    client.api.containers(all=True, filters={"label": f"{LABEL_DEPLOYMENT}={DEPLOYMENT}"})
    return time.perf_counter() - started


def timed_scan() -> tuple[float, int]:
    from provisioning.usage import scan_usage

    started = time.perf_counter()
    record = scan_usage()
    if record is None:
        raise harness.BenchError("Another usage scan holds the scan lock; run the benchmark alone.")
    return time.perf_counter() - started, record.engine_calls


def clean_up(first_scan_id: int) -> None:
    """Delete the benchmark's rows and its deployment's containers and volumes."""
    from hosting.models import Customer, Organization, Site
    from provisioning.usage_models import UsageScan

    harness.remove_deployment_resources(threads=THREADS)
    Site.objects.filter(organization__slug=ORGANIZATION_SLUG).delete()
    Customer.objects.filter(organization__slug=ORGANIZATION_SLUG).delete()
    Organization.objects.filter(slug=ORGANIZATION_SLUG).delete()
    UsageScan.objects.filter(pk__gt=first_scan_id).delete()


def run() -> dict[str, Any]:
    from django.core.management import call_command

    from provisioning.usage_models import UsageScan

    call_command("migrate", verbosity=0)
    harness.ensure_demo_images()
    client = harness.docker_client()
    last_scan = UsageScan.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    clean_up(last_scan)

    try:
        started = time.perf_counter()
        sites = create_sites(SITES)
        create_engine_resources(client, sites, CONTAINERS)
        setup_seconds = time.perf_counter() - started

        # The first scan creates every site's usage row; it is not counted.
        first_scan, engine_calls = timed_scan()
        baselines, scans = [], []
        for _ in range(ROUNDS):
            baselines.append(bare_engine_calls(client))
            seconds, engine_calls = timed_scan()
            scans.append(seconds)
    finally:
        clean_up(last_scan)

    return {
        "sites": SITES,
        "containers": CONTAINERS,
        "rounds": ROUNDS,
        "setup_seconds": setup_seconds,
        "first_scan_seconds": first_scan,
        "baseline_seconds": baselines,
        "scan_seconds": scans,
        "engine_calls": engine_calls,
        "ratio": ratio(median(scans), median(baselines)),
    }


def main() -> None:
    os.environ.setdefault("HOSTYARD_DEPLOYMENT", DEPLOYMENT)
    if os.environ["HOSTYARD_DEPLOYMENT"] != DEPLOYMENT:
        raise harness.BenchError(
            f"HOSTYARD_DEPLOYMENT is {os.environ['HOSTYARD_DEPLOYMENT']!r}; unset it or set it "
            f"to {DEPLOYMENT!r}, because the benchmark removes that deployment's volumes."
        )
    harness.setup_django()
    result = run()
    section = "\n".join(
        [
            f"## Usage scan ({result['sites']} sites, {result['containers']} running containers)",
            "",
            harness.markdown_table(
                ["", "median s", "min s", "max s"],
                [
                    [
                        "bare df() + listing",
                        fmt(median(result["baseline_seconds"]), 3),
                        fmt(min(result["baseline_seconds"]), 3),
                        fmt(max(result["baseline_seconds"]), 3),
                    ],
                    [
                        "scan_usage()",
                        fmt(median(result["scan_seconds"]), 3),
                        fmt(min(result["scan_seconds"]), 3),
                        fmt(max(result["scan_seconds"]), 3),
                    ],
                ],
            ),
            "",
            f"Ratio scan / bare engine calls: {fmt(result['ratio'])} "
            f"({result['engine_calls']} engine calls per scan, {result['rounds']} rounds; "
            f"first scan {fmt(result['first_scan_seconds'], 3)} s; "
            f"setup {fmt(result['setup_seconds'], 1)} s).",
        ]
    )
    harness.write_result("usage_scan", {**result, "section": section})


if __name__ == "__main__":
    main()
