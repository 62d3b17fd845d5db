"""Benchmark: one reconciler scan over 1,000 sites against one bare container listing.

Run from the repository root with the project's settings and a migrated database:

    DATABASE_URL=postgres://... python bench/reconciler.py [--sites 1000] [--containers 1000]

It creates ``--sites`` Site rows inside a transaction that is rolled back at the
end. It also creates ``--containers`` containers from ``hostyard/busybox:1`` with
``docker create``, labelled as the app containers of the first sites. They are
never started, so they cost the engine metadata but no processes. The sites are suspended, so
the stopped containers are in step and the scans open no operations. Containers
carry a deployment label of their own and are removed at the end, also after an
error.

It prints the median of ``--rounds`` scans, the median of as many bare
``containers(all=True, filters=...)`` listings of the same containers, and their
ratio: the reconciler's own cost on top of the one engine call it must make.
"""

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import transaction  # noqa: E402

from hosting.catalog import load_catalog  # noqa: E402
from hosting.models import App, Customer, Organization, Plan, Site  # noqa: E402
from provisioning.drivers import registry  # noqa: E402
from provisioning.drivers.runtime.base import LABEL_DEPLOYMENT, container_name, site_labels  # noqa: E402
from provisioning.reconciler import reconcile  # noqa: E402

IMAGE = "hostyard/busybox:1"


class Rollback(Exception):
    """Raised to roll the benchmark's rows back."""


def create_sites(count: int) -> list[Site]:
    load_catalog()
    organization = Organization.objects.create(name="Bench", slug=f"bench-{os.getpid()}")
    customer = Customer.objects.create(organization=organization, email="bench@bench.test")
    app, plan = App.objects.get(slug="demo"), Plan.objects.get(slug="micro")
    return Site.objects.bulk_create(
        Site(
            organization=organization,
            customer=customer,
            plan=plan,
            app=app,
            app_version="1.0",
            label=f"bench{index}",
            hostname=f"bench{index}-{os.getpid()}.bench.test",
            status="suspended",
            desired_status="suspended",
        )
        for index in range(count)
    )


def create_containers(sites: list[Site], deployment: str) -> None:
    client = registry.runtime().client

    def create(site: Site) -> None:
        client.containers.create(
            IMAGE,
            command=["true"],
            name=container_name(str(site.uuid)),
            labels=site_labels(str(site.uuid), deployment=deployment),
            network_mode="none",
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, sites))


def remove_containers(deployment: str) -> int:
    client = registry.runtime().client
    found = client.containers.list(all=True, filters={"label": f"{LABEL_DEPLOYMENT}={deployment}"})
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda container: container.remove(force=True), found))
    return len(found)


def median_seconds(action, rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=1000, help="Site rows to create.")
    parser.add_argument("--containers", type=int, default=1000, help="Containers to create.")
    parser.add_argument("--rounds", type=int, default=5, help="Timed repetitions of each.")
    options = parser.parse_args()

    deployment = f"bench-{os.getpid()}"
    settings.HOSTYARD_DEPLOYMENT = deployment
    registry.reset()
    client = registry.runtime().client
    label_filter = {"label": f"{LABEL_DEPLOYMENT}={deployment}"}
    try:
        with transaction.atomic():
            sites = create_sites(options.sites)
            started = time.perf_counter()
            create_containers(sites[: options.containers], deployment)
            print(
                f"created {options.containers} containers in {time.perf_counter() - started:.1f} s"
            )

            report = reconcile()
            assert report.opened == [], report.opened
            scan = median_seconds(reconcile, options.rounds)
            listing = median_seconds(
                lambda: client.api.containers(all=True, filters=label_filter), options.rounds
            )
            raise Rollback
    except Rollback:
        pass
    finally:
        removed = remove_containers(deployment)
        print(f"removed {removed} containers")

    print(f"sites: {options.sites}, containers: {options.containers}, rounds: {options.rounds}")
    print(f"reconciler scan (median): {scan * 1000:.1f} ms")
    print(f"bare listing (median):    {listing * 1000:.1f} ms")
    print(f"ratio scan / listing:     {scan / listing:.2f}")


if __name__ == "__main__":
    main()
