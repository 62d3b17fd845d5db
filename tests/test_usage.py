"""The usage API, sample pruning and quota notifications (no engine needed)."""

import hashlib
import hmac
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from hosting.models import Organization, Site, SiteStatus
from provisioning.drivers import registry
from provisioning.drivers.runtime.docker_usage import DockerUsageProbe, read_cgroup
from provisioning.notifications import Notification, send
from provisioning.usage import SCAN_LOCK_KEY, backup_sizes, prune_samples, scan_usage
from provisioning.usage_models import MIB, SiteUsage, UsageSample, UsageScan
from tests.fixtures.webhook import WebhookReceiver, webhook_receiver  # noqa: F401
from tests.test_quotas import make_site

pytestmark = pytest.mark.usefixtures("catalog")


def measured(site: Site, **fields: object) -> SiteUsage:
    defaults = {"measured_at": timezone.now(), "container_state": "running"}
    return SiteUsage.objects.create(site=site, **{**defaults, **fields})


def test_site_usage_shows_use_and_limits(api: APIClient, organization: Organization) -> None:
    site = make_site(organization, "micro")
    measured(
        site,
        volume_bytes=200 * MIB,
        backup_bytes=16 * MIB,
        memory_bytes=32 * MIB,
        disk_warning_percent=80,
        oom_kills=2,
        restart_count=1,
    )

    body = api.get(f"/api/v1/sites/{site.uuid}/usage").json()

    assert body["disk"]["used_mb"] == 216
    assert body["disk"]["volume_mb"] == 200
    assert body["disk"]["backups_mb"] == 16
    assert body["disk"]["limit_mb"] == 256
    assert body["disk"]["percent"] == 84.4
    assert body["memory"] == {"used_mb": 32, "limit_mb": 64, "percent": 50.0}
    assert body["pids_limit"] == 64
    assert body["oom_kills"] == 2
    assert body["restart_count"] == 1
    assert [warning["code"] for warning in body["warnings"]] == ["disk_warning", "oom_killed"]


def test_site_usage_before_first_scan(api: APIClient, organization: Organization) -> None:
    site = make_site(organization, "micro")

    body = api.get(f"/api/v1/sites/{site.uuid}/usage").json()

    assert body["measured_at"] is None
    assert body["disk"]["used_mb"] is None
    assert body["disk"]["limit_mb"] == 256
    assert body["warnings"] == []


def test_site_usage_of_other_organization_is_404(
    api: APIClient, other_api: APIClient, organization: Organization
) -> None:
    site = make_site(organization, "micro")
    measured(site)

    assert other_api.get(f"/api/v1/sites/{site.uuid}/usage").status_code == 404
    assert api.get(f"/api/v1/sites/{uuid.uuid4()}/usage").status_code == 404


def test_organization_usage_totals(api: APIClient, organization: Organization) -> None:
    Organization.objects.filter(pk=organization.pk).update(
        max_sites=10, max_memory_mb=1024, max_disk_mb=4096
    )
    first = make_site(organization, "micro", index=0)
    second = make_site(organization, "starter", index=1)
    gone = make_site(organization, "starter", index=2)
    Site.objects.filter(pk=gone.pk).update(status=SiteStatus.TERMINATED)
    measured(first, volume_bytes=10 * MIB, memory_bytes=20 * MIB, disk_warning_percent=90)
    measured(
        second,
        volume_bytes=300 * MIB,
        backup_bytes=100 * MIB,
        over_quota_since=timezone.now(),
        oom_kills=3,
    )

    body = api.get("/api/v1/usage").json()

    assert body["sites"] == {"used": 2, "limit": 10}
    assert body["memory"] == {"allocated_mb": 576, "used_mb": 20, "limit_mb": 1024}
    assert body["disk"] == {"allocated_mb": 2304, "used_mb": 410, "limit_mb": 4096}
    assert body["sites_with_disk_warning"] == 1
    assert body["sites_over_disk_quota"] == 1
    assert body["oom_kills"] == 3


def test_organization_usage_is_per_organization(other_api: APIClient, organization) -> None:
    measured(make_site(organization, "micro"), volume_bytes=10 * MIB)

    body = other_api.get("/api/v1/usage").json()

    assert body["sites"]["used"] == 0
    assert body["disk"]["used_mb"] == 0


def test_usage_query_counts_are_constant(api: APIClient, organization) -> None:
    first = make_site(organization, "micro", index=0)
    measured(first)

    def count_queries(path: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(path).status_code == 200
        return len(queries)

    # The first request also records the key's last use.
    count_queries("/api/v1/usage")
    few_site = count_queries(f"/api/v1/sites/{first.uuid}/usage")
    few_total = count_queries("/api/v1/usage")
    for index in range(1, 30):
        measured(make_site(organization, "micro", index=index), volume_bytes=index * MIB)

    assert count_queries(f"/api/v1/sites/{first.uuid}/usage") == few_site
    assert count_queries("/api/v1/usage") == few_total


def test_prune_keeps_latest_samples(organization: Organization) -> None:
    sites = [make_site(organization, "micro", index=index) for index in range(2)]
    start = timezone.now()
    for site in sites:
        UsageSample.objects.bulk_create(
            UsageSample(site=site, measured_at=start + timedelta(minutes=minute))
            for minute in range(7)
        )

    deleted = prune_samples(keep=3)

    assert deleted == 8
    for site in sites:
        kept = list(site.usage_samples.values_list("measured_at", flat=True))
        assert kept == [start + timedelta(minutes=minute) for minute in (6, 5, 4)]


def test_prune_keeps_latest_scans(db: None) -> None:
    UsageScan.objects.bulk_create(UsageScan() for _ in range(5))

    prune_samples(keep=2)

    assert UsageScan.objects.count() == 2


def test_backup_sizes_without_directory(tmp_path) -> None:
    assert backup_sizes("") == {}
    assert backup_sizes(str(tmp_path / "missing")) == {}


def notification() -> Notification:
    return Notification(
        event="disk_warning",
        site_uuid=str(uuid.uuid4()),
        hostname="ada.sites.hostyard.test",
        organization="riverside",
        message="Disk use reached 80%.",
        data={"threshold": 80},
    )


def test_webhook_body_is_signed(
    settings,
    webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    settings.HOSTYARD_QUOTA_WEBHOOK_URL = webhook_receiver.url
    settings.HOSTYARD_QUOTA_WEBHOOK_SECRET = "s3cret"

    delivered = send([notification()])

    [post] = webhook_receiver.posts
    expected = hmac.new(b"s3cret", post.body, hashlib.sha256).hexdigest()
    assert delivered == 1
    assert post.path == "/hooks/quota"
    assert post.headers["X-Hostyard-Signature"] == f"sha256={expected}"
    assert post.json()["event"] == "disk_warning"
    assert post.json()["data"] == {"threshold": 80}


def test_webhook_rejection_is_logged(
    settings,
    webhook_receiver: WebhookReceiver,  # noqa: F811
    caplog,
) -> None:
    settings.HOSTYARD_QUOTA_WEBHOOK_URL = webhook_receiver.url
    webhook_receiver.status = 500

    assert send([notification()]) == 0
    assert "quota webhook rejected" in caplog.text


def test_unreachable_webhook_is_logged(settings, caplog, unused_loopback_port: int) -> None:
    settings.HOSTYARD_QUOTA_WEBHOOK_URL = f"http://127.0.0.1:{unused_loopback_port}/hook"

    assert send([notification()]) == 0
    assert "quota webhook failed" in caplog.text


def test_no_webhook_only_logs(settings, caplog) -> None:
    settings.HOSTYARD_QUOTA_WEBHOOK_URL = ""

    assert send([notification()]) == 0
    assert "quota notification" in caplog.text


@pytest.fixture
def unused_loopback_port() -> int:
    import socket

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def test_unknown_memory_source_is_rejected() -> None:
    with pytest.raises(ValueError, match="Unknown memory source 'proc'"):
        DockerUsageProbe(registry.runtime(), memory_source="proc")


def test_cgroup_v2_files_are_read(tmp_path) -> None:
    directory = tmp_path / "system.slice" / "docker-abc.scope"
    directory.mkdir(parents=True)
    (directory / "memory.current").write_text("5000000\n")
    (directory / "memory.stat").write_text("anon 100\ninactive_file 1000000\n")
    (directory / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")

    reading = read_cgroup(tmp_path, "abc")

    assert reading is not None
    assert reading.memory_bytes == 4_000_000
    assert reading.oom_kills == 2
    assert read_cgroup(tmp_path, "other") is None


def test_scan_skips_while_another_runs(caplog) -> None:
    import psycopg

    database = connection.settings_dict
    with psycopg.connect(
        host=database["HOST"],
        port=database["PORT"],
        user=database["USER"],
        password=database["PASSWORD"],
        dbname=database["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [SCAN_LOCK_KEY])

        assert scan_usage() is None
        assert not UsageScan.objects.exists()
        assert "another scan is running" in caplog.text


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("siteusage", "site0.sites.hostyard.test"),
        ("usagesample", "site0.sites.hostyard.test"),
        ("usagescan", "Engine calls"),
    ],
)
def test_usage_admin_pages_render(
    admin_client, organization: Organization, model: str, expected: str
) -> None:
    site = make_site(organization, "micro")
    measured(site, volume_bytes=3 * MIB, memory_bytes=MIB)
    UsageSample.objects.create(site=site, volume_bytes=3 * MIB)
    UsageScan.objects.create(sites=1, duration_ms=12, engine_calls=3)

    response = admin_client.get(f"/admin/provisioning/{model}/")

    assert response.status_code == 200
    assert expected in response.content.decode()
