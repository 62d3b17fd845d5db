"""Limits, usage scans and the quota policy against the real Docker Engine.

Operations run in-process with ``run_to_end``; the usage scan runs in-process too.
"""

import docker
import pytest
from django.conf import settings as django_settings

from hosting import services
from hosting.models import App, Organization, Plan, Site, SiteEvent
from provisioning.drivers.runtime.base import LABEL_SITE
from provisioning.models import Operation, OperationKind
from provisioning.usage import scan_usage
from provisioning.usage_models import SiteUsage, UsageScan
from tests.fixtures.platform import client_for, wait_for
from tests.fixtures.webhook import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.lifecycle_helpers import run_to_end

pytestmark = pytest.mark.usefixtures("catalog")

KIB = 1024
# A tiny plan: 1 MiB of disk is filled in a moment, 16 MiB of memory is quickly exceeded.
TINY_PLAN = {
    "slug": "tiny",
    "name": "Tiny",
    "memory_mb": 16,
    "cpus": "0.1",
    "pids_limit": 32,
    "disk_mb": 1,
    "max_sites_per_customer": 5,
}


@pytest.fixture
def tiny_plan(db: None) -> Plan:
    return Plan.objects.create(**TINY_PLAN)


def running_site(organization: Organization, plan: Plan, label: str = "ada") -> Site:
    site, operation = services.sign_up_site(
        organization=organization,
        customer_email=f"{label}@riverside.edu",
        app=App.objects.get(slug="demo"),
        plan=plan,
        label=label,
    )
    assert run_to_end(operation).value == "succeeded"
    site.refresh_from_db()
    return site


def site_container(client: docker.DockerClient, site: Site):
    [container] = client.containers.list(all=True, filters={"label": f"{LABEL_SITE}={site.uuid}"})
    return container


def write_file(container, size_bytes: int) -> None:
    """Replace /data/fill in the container with ``size_bytes`` zero bytes."""
    exit_code, output = container.exec_run(
        ["dd", "if=/dev/zero", "of=/data/fill", f"bs={KIB}", f"count={size_bytes // KIB}"]
    )
    assert exit_code == 0, output


def event_kinds(site: Site) -> list[str]:
    return list(site.events.order_by("id").values_list("kind", flat=True))


def latest_operation(site: Site, kind: str) -> Operation:
    return site.operations.filter(kind=kind).order_by("-id").first()


@pytest.mark.parametrize("plan_slug", ["micro", "starter"])
def test_container_limits_match_plan(engine, organization: Organization, plan_slug: str) -> None:
    plan = Plan.objects.get(slug=plan_slug)
    site = running_site(organization, plan)
    container = site_container(engine, site)
    host_config = container.attrs["HostConfig"]

    def cgroup_value(path: str) -> int:
        exit_code, output = container.exec_run(["cat", f"/sys/fs/cgroup/{path}"])
        assert exit_code == 0, output
        return int(output.decode().strip())

    assert host_config["Memory"] == plan.memory_mb * 1024 * 1024
    assert host_config["MemorySwap"] == plan.memory_mb * 1024 * 1024
    assert host_config["NanoCpus"] == int(plan.cpus * 1_000_000_000)
    assert host_config["PidsLimit"] == plan.pids_limit
    # The kernel's own view, read inside the container (cgroup v1 on this engine).
    assert cgroup_value("memory/memory.limit_in_bytes") == plan.memory_mb * 1024 * 1024
    assert cgroup_value("pids/pids.max") == plan.pids_limit
    quota, period = cgroup_value("cpu/cpu.cfs_quota_us"), cgroup_value("cpu/cpu.cfs_period_us")
    assert quota / period == pytest.approx(float(plan.cpus))


def test_scan_measures_disk_and_memory(engine, organization: Organization) -> None:
    site = running_site(organization, Plan.objects.get(slug="micro"))
    write_file(site_container(engine, site), 200 * KIB)

    scan = scan_usage()

    usage = SiteUsage.objects.get(site=site)
    assert scan is not None
    assert scan.sites == 1
    assert scan.engine_calls == 3
    assert 200 * KIB <= usage.volume_bytes < 300 * KIB
    assert usage.memory_bytes is not None
    assert 0 < usage.memory_bytes < site.plan.memory_mb * 1024 * 1024
    assert usage.container_state == "running"
    assert site.usage_samples.count() == 1


def test_scan_reads_memory_through_stats(engine, organization: Organization, settings) -> None:
    settings.HOSTYARD_USAGE_MEMORY_SOURCE = "stats"
    site = running_site(organization, Plan.objects.get(slug="micro"))

    scan = scan_usage()

    usage = SiteUsage.objects.get(site=site)
    assert scan is not None
    assert scan.engine_calls == 4
    assert usage.memory_bytes is not None
    assert 0 < usage.memory_bytes < site.plan.memory_mb * 1024 * 1024


def test_scan_counts_backups(engine, organization, settings, tmp_path) -> None:
    site = running_site(organization, Plan.objects.get(slug="micro"))
    settings.HOSTYARD_BACKUP_DIR = str(tmp_path)
    (tmp_path / str(site.uuid)).mkdir()
    (tmp_path / str(site.uuid) / "2026-12-01.tar.gz").write_bytes(b"x" * 3000)
    (tmp_path / f"{site.uuid}-2026-12-02.tar.gz").write_bytes(b"x" * 500)
    (tmp_path / "unrelated.txt").write_bytes(b"x" * 10_000)

    scan_usage()

    assert SiteUsage.objects.get(site=site).backup_bytes == 3500


def test_disk_quota_warns_suspends_and_resumes(
    engine,
    organization: Organization,
    tiny_plan: Plan,
    settings,
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    settings.HOSTYARD_QUOTA_WEBHOOK_URL = webhook_receiver.url
    settings.HOSTYARD_QUOTA_WEBHOOK_SECRET = "test-webhook-secret"
    settings.HOSTYARD_DISK_GRACE_SECONDS = 3600
    site = running_site(organization, tiny_plan)
    container = site_container(engine, site)
    api = client_for(organization)

    # 82 % of 1 MiB: the 80 % warning, once, however often the scan runs.
    write_file(container, 860 * KIB)
    scan_usage()
    scan_usage()
    assert event_kinds(site) == ["disk_warning"]
    assert webhook_receiver.events() == ["disk_warning"]
    first = webhook_receiver.posts[0]
    assert first.json()["data"]["threshold"] == 80
    assert first.headers["X-Hostyard-Signature"].startswith("sha256=")
    usage_body = api.get(f"/api/v1/sites/{site.uuid}/usage").json()
    assert usage_body["warnings"] == [{"code": "disk_warning", "threshold": 80}]
    assert usage_body["disk"]["percent"] >= 80

    # 92 %: the 90 % warning.
    write_file(container, 940 * KIB)
    scan_usage()
    assert event_kinds(site) == ["disk_warning", "disk_warning"]
    assert site.events.order_by("-id").first().data["threshold"] == 90

    # Over the quota: an error at once, but no suspension within the grace period.
    write_file(container, 1100 * KIB)
    scan_usage()
    site.refresh_from_db()
    assert event_kinds(site)[-1] == "disk_quota_exceeded"
    assert site.desired_status == "running"
    assert latest_operation(site, OperationKind.SUSPEND) is None

    # The grace period is over: the site is suspended with reason "quota".
    settings.HOSTYARD_DISK_GRACE_SECONDS = 0
    scan_usage()
    suspend = latest_operation(site, OperationKind.SUSPEND)
    assert suspend is not None
    assert run_to_end(suspend).value == "succeeded"
    site.refresh_from_db()
    container.reload()
    assert site.status == "suspended"
    assert site.suspend_reason == "quota"
    assert site.status_reason == "Suspended: quota."
    assert container.status == "exited"
    assert event_kinds(site)[-1] == "suspended"
    assert webhook_receiver.events()[-1] == "suspended"
    assert api.get(f"/api/v1/sites/{site.uuid}/usage").json()["warnings"][0] == {
        "code": "suspended",
        "reason": "quota",
    }

    # A scan while still over the quota changes nothing.
    scan_usage()
    assert latest_operation(site, OperationKind.UNSUSPEND) is None

    # The customer's data is cleaned up: the next scan resumes the site.
    engine.containers.run(
        "hostyard/busybox:1",
        ["rm", "/data/fill"],
        volumes={site.volume_name: {"bind": "/data", "mode": "rw"}},
        network_mode="none",
        remove=True,
    )
    scan_usage()
    unsuspend = latest_operation(site, OperationKind.UNSUSPEND)
    assert unsuspend is not None
    assert run_to_end(unsuspend).value == "succeeded"
    site.refresh_from_db()
    container.reload()
    usage = SiteUsage.objects.get(site=site)
    assert site.status == "running"
    assert site.status_reason == ""
    assert site.suspend_reason == ""
    assert container.status == "running"
    assert usage.over_quota_since is None
    assert usage.disk_warning_percent == 0
    assert event_kinds(site)[-1] == "unsuspended"
    assert webhook_receiver.events()[-1] == "unsuspended"


def test_plan_growth_resumes_suspended_site(engine, organization, tiny_plan, settings) -> None:
    settings.HOSTYARD_DISK_GRACE_SECONDS = 0
    site = running_site(organization, tiny_plan)
    write_file(site_container(engine, site), 1100 * KIB)
    scan_usage()
    run_to_end(latest_operation(site, OperationKind.SUSPEND))

    Site.objects.filter(pk=site.pk).update(plan=Plan.objects.get(slug="micro"))
    scan_usage()

    unsuspend = latest_operation(site, OperationKind.UNSUSPEND)
    assert unsuspend is not None
    assert run_to_end(unsuspend).value == "succeeded"
    site.refresh_from_db()
    assert site.status == "running"


@pytest.mark.parametrize("memory_source", ["auto", "stats"])
def test_oom_kill_is_counted_and_reported(
    engine,
    organization: Organization,
    tiny_plan: Plan,
    settings,
    memory_source: str,
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    settings.HOSTYARD_USAGE_MEMORY_SOURCE = memory_source
    settings.HOSTYARD_QUOTA_WEBHOOK_URL = webhook_receiver.url
    site = running_site(organization, tiny_plan)
    scan_usage()
    container = site_container(engine, site)

    # dd allocates its 64 MiB block at once: four times the plan's 16 MiB.
    exit_code, _ = container.exec_run(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
    scan_usage()
    scan_usage()

    usage = SiteUsage.objects.get(site=site)
    body = client_for(organization).get(f"/api/v1/sites/{site.uuid}/usage").json()
    assert exit_code == 137
    assert usage.oom_kills == 1
    assert event_kinds(site) == ["oom_killed"]
    assert "16 MiB memory limit" in site.events.get().message
    assert webhook_receiver.events() == ["oom_killed"]
    assert body["oom_kills"] == 1
    assert body["warnings"][0]["code"] == "oom_killed"
    container.reload()
    assert container.status == "running"


def test_restart_loop_stops_container(engine, organization: Organization, settings) -> None:
    settings.HOSTYARD_RESTART_LOOP_COUNT = 3
    site = running_site(organization, Plan.objects.get(slug="micro"))
    container = site_container(engine, site)

    # The entrypoint writes /data/www/healthz at every start; a directory there makes
    # it exit 1, and the restart policy starts it again and again.
    exit_code, output = container.exec_run(
        ["sh", "-c", "rm /data/www/healthz && mkdir /data/www/healthz && kill 1"]
    )
    assert exit_code == 0, output

    def restarts() -> int:
        container.reload()
        return int(container.attrs["RestartCount"])

    wait_for(lambda: restarts() >= 3, timeout=60, message="three restarts")

    def suspended_by_scan() -> bool:
        scan_usage()
        return Site.objects.get(pk=site.pk).suspend_reason == "restart_loop"

    wait_for(suspended_by_scan, timeout=60, interval=0.5, message="a scan to see the loop")
    assert run_to_end(latest_operation(site, OperationKind.SUSPEND)).value == "succeeded"

    site.refresh_from_db()
    container.reload()
    usage = SiteUsage.objects.get(site=site)
    assert site.status == "suspended"
    assert site.status_reason == "Suspended: restart_loop."
    assert container.status == "exited"
    assert usage.restart_count >= 3
    assert usage.restart_loop_at is not None
    assert "restart_loop" in event_kinds(site)
    assert SiteEvent.objects.get(site=site, kind="restart_loop").level == "error"
    # Later scans do not suspend again or open more operations.
    scan_usage()
    assert site.operations.filter(kind=OperationKind.SUSPEND).count() == 1


@pytest.fixture
def fast_usage_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make workers started afterwards run the usage scan every second."""
    monkeypatch.setenv("HOSTYARD_USAGE_SCAN_INTERVAL_SECONDS", "1")


def test_worker_beat_runs_usage_scan(fast_usage_scan, worker_factory, organization) -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["scan-usage"]
    site, _ = services.sign_up_site(
        organization=organization,
        customer_email="ada@riverside.edu",
        app=App.objects.get(slug="demo"),
        plan=Plan.objects.get(slug="micro"),
        label="ada",
    )

    worker_factory()

    def measured_running() -> bool:
        usage = SiteUsage.objects.filter(site=site).first()
        return usage is not None and usage.container_state == "running"

    wait_for(measured_running, timeout=90, message="a scheduled scan of the running site")
    assert entry["task"] == "provisioning.tasks.scan_usage"
    assert UsageScan.objects.filter(sites=1).exists()
