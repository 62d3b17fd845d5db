"""Lifecycle operations against the real Docker Engine, run in-process (no broker)."""

import pytest
from django.conf import settings

from hosting import lifecycle, services
from hosting.errors import ServiceError
from hosting.models import Backup, Organization, Plan, SiteEvent
from provisioning.engine.runner import Outcome, run_operation
from tests.lifecycle_helpers import (
    app_container,
    body,
    fetch,
    run_to_end,
    running_site,
    site_containers,
    site_volumes,
    write_file,
)

pytestmark = pytest.mark.usefixtures("catalog")


@pytest.fixture(autouse=True)
def _backup_dir(settings, tmp_path) -> None:
    settings.HOSTYARD_BACKUP_DIR = tmp_path / "backups"


def test_suspend_stops_and_unsuspend_starts(engine, organization: Organization) -> None:
    site = running_site(organization)

    suspend = lifecycle.suspend_site(site=site, reason="billing", requested_by="stripe")
    assert run_to_end(suspend) is Outcome.SUCCEEDED
    site.refresh_from_db()
    assert site.status == "suspended"
    assert site.suspend_reason == "billing"
    assert app_container(engine, site).status == "exited"
    assert SiteEvent.objects.filter(site=site, kind="suspend_requested").exists()

    unsuspend = lifecycle.unsuspend_site(site=site, requested_by="stripe")
    assert run_to_end(unsuspend) is Outcome.SUCCEEDED
    site.refresh_from_db()
    assert site.status == "running"
    assert site.suspend_reason == ""
    assert fetch(engine, site, "/healthz").status_code == 200


def test_forbidden_transitions_raise_invalid_state(engine, organization: Organization) -> None:
    site = running_site(organization)

    with pytest.raises(ServiceError) as unsuspend:
        lifecycle.unsuspend_site(site=site)
    first = lifecycle.suspend_site(site=site, reason="quota")
    assert lifecycle.suspend_site(site=site, reason="quota").pk == first.pk
    assert run_to_end(first) is Outcome.SUCCEEDED
    with pytest.raises(ServiceError) as twice:
        lifecycle.suspend_site(site=site, reason="staff")
    with pytest.raises(ServiceError) as restart:
        lifecycle.restart_site(site=site)
    with pytest.raises(ServiceError) as reason:
        lifecycle.suspend_site(site=site, reason="boredom")

    assert unsuspend.value.code == "invalid_state"
    assert unsuspend.value.status == 409
    assert "not suspended" in unsuspend.value.message
    assert twice.value.code == "invalid_state"
    assert "already suspended (reason: quota)" in twice.value.message
    site.refresh_from_db()
    assert site.status_reason == "Suspended: quota."
    assert restart.value.code == "invalid_state"
    assert reason.value.code == "invalid_reason"


def test_restart_keeps_one_running_container(engine, organization: Organization) -> None:
    site = running_site(organization)
    before = app_container(engine, site)

    assert run_to_end(lifecycle.restart_site(site=site)) is Outcome.SUCCEEDED

    after = app_container(engine, site)
    assert after.id == before.id
    assert after.status == "running"
    assert after.attrs["State"]["StartedAt"] != before.attrs["State"]["StartedAt"]


def test_change_plan_updates_limits_in_place(engine, organization: Organization) -> None:
    site = running_site(organization)
    before = app_container(engine, site)
    starter = Plan.objects.get(slug="starter")

    operation = lifecycle.change_plan(site=site, plan=starter)
    assert run_to_end(operation) is Outcome.SUCCEEDED

    after = app_container(engine, site)
    host_config = after.attrs["HostConfig"]
    assert after.id == before.id
    assert after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]
    assert host_config["Memory"] == starter.memory_mb * 1024 * 1024
    assert host_config["NanoCpus"] == int(float(starter.cpus) * 1_000_000_000)
    assert host_config["PidsLimit"] == starter.pids_limit
    site.refresh_from_db()
    assert site.plan == starter


def test_change_plan_rejects_plan_data_does_not_fit(engine, organization: Organization) -> None:
    site = running_site(organization, plan="starter")
    container = app_container(engine, site)
    # 2 MiB of data against a plan allowing 1 MiB of disk.
    container.exec_run(["sh", "-c", "head -c 2097152 /dev/zero > /data/www/big.bin"])
    tiny = Plan.objects.create(
        slug="tiny-disk", name="Tiny disk", memory_mb=64, cpus="0.25", pids_limit=64, disk_mb=1
    )

    with pytest.raises(ServiceError) as rejected:
        lifecycle.change_plan(site=site, plan=tiny)

    assert rejected.value.code == "quota_exceeded"
    assert rejected.value.status == 409
    assert rejected.value.extra["quota"] == "disk_mb"
    assert rejected.value.extra["used"] >= 2.0
    assert "tiny-disk" in rejected.value.message
    assert site.operations.count() == 1


def test_update_to_new_version_succeeds(engine, organization: Organization) -> None:
    site = running_site(organization)
    write_file(engine, site, "note.txt", "kept")

    operation = lifecycle.update_site(site=site, version="1.1")
    assert run_to_end(operation) is Outcome.SUCCEEDED

    site.refresh_from_db()
    assert site.app_version == "1.1"
    assert site.status == "running"
    assert body(engine, site, "/version") == "1.1"
    assert body(engine, site, "/note.txt") == "kept"
    assert app_container(engine, site).image.tags == ["hostyard/demo:1.1"]
    assert Backup.objects.get(site=site).kind == "pre_update"


def test_failed_update_rolls_back_image_and_data(engine, organization: Organization) -> None:
    site = running_site(organization)
    write_file(engine, site, "note.txt", "before update")

    operation = lifecycle.update_site(site=site, version="broken")
    outcome = run_to_end(operation)

    site.refresh_from_db()
    operation.refresh_from_db()
    failed = operation.steps.get(status="failed")
    assert outcome is Outcome.FAILED
    assert failed.name == "wait_healthy"
    assert failed.error_code == "container_exited"
    assert "migration failed" in failed.detail
    assert operation.steps.get(name="stop_for_update").result["undone"] is True
    assert site.app_version == "1.0"
    assert site.status == "running"
    assert "Update to broken failed" in site.status_reason
    assert "rolled back to 1.0" in site.status_reason
    assert body(engine, site, "/version") == "1.0"
    assert body(engine, site, "/note.txt") == "before update"
    assert app_container(engine, site).image.tags == ["hostyard/demo:1.0"]
    assert len(site_containers(engine, site)) == 1
    event = SiteEvent.objects.get(site=site, kind="update_rolled_back")
    assert event.data["volume_restored"] is True


def test_update_to_missing_image_fails_once(engine, organization: Organization) -> None:
    site = running_site(organization)
    before = app_container(engine, site)

    operation = lifecycle.update_site(site=site, version="9.9")
    outcome = run_to_end(operation)

    operation.refresh_from_db()
    site.refresh_from_db()
    failed = operation.steps.get(status="failed")
    assert outcome is Outcome.FAILED
    assert failed.name == "check_update_image"
    assert failed.attempts == 1
    assert failed.error_code == "image_not_found"
    assert "Image hostyard/demo:9.9 not found" in failed.message
    assert operation.steps.get(name="stop_for_update").status == "pending"
    assert site.app_version == "1.0"
    assert site.status == "running"
    assert app_container(engine, site).id == before.id
    assert app_container(engine, site).status == "running"
    assert body(engine, site, "/version") == "1.0"


def test_queued_update_rolls_back_to_previous_update(engine, organization) -> None:
    site = running_site(organization)

    first = lifecycle.update_site(site=site, version="1.1")
    second = lifecycle.update_site(site=site, version="broken")

    assert run_operation(second.pk).outcome is Outcome.BLOCKED
    assert run_to_end(first) is Outcome.SUCCEEDED
    assert run_to_end(second) is Outcome.FAILED
    site.refresh_from_db()
    second.refresh_from_db()
    assert second.params["previous_version"] == "1.1"
    assert site.app_version == "1.1"
    assert "rolled back to 1.1" in site.status_reason
    assert body(engine, site, "/version") == "1.1"
    assert app_container(engine, site).image.tags == ["hostyard/demo:1.1"]


def test_duplicate_queued_update_answers_409(engine, organization: Organization) -> None:
    site = running_site(organization)
    lifecycle.update_site(site=site, version="1.1")

    with pytest.raises(ServiceError) as raised:
        lifecycle.update_site(site=site, version="1.1")

    assert raised.value.status == 409
    assert "already queued or running" in raised.value.message


def test_successful_update_clears_reason(engine, organization: Organization) -> None:
    site = running_site(organization)

    assert run_to_end(lifecycle.update_site(site=site, version="1.1")) is Outcome.SUCCEEDED

    site.refresh_from_db()
    assert site.app_version == "1.1"
    assert site.status_reason == ""


def test_backup_and_restore(engine, organization: Organization) -> None:
    site = running_site(organization)
    write_file(engine, site, "note.txt", "first")
    assert run_to_end(lifecycle.back_up_site(site=site)) is Outcome.SUCCEEDED
    backup = Backup.objects.get(site=site)
    write_file(engine, site, "note.txt", "second")

    assert run_to_end(lifecycle.restore_backup(site=site, backup=backup)) is Outcome.SUCCEEDED

    assert backup.size_bytes > 0
    assert backup.path.startswith(str(settings.HOSTYARD_BACKUP_DIR))
    assert body(engine, site, "/note.txt") == "first"
    assert len(site_containers(engine, site)) == 1


def test_terminate_keeps_volume_until_purge(engine, organization: Organization) -> None:
    site = running_site(organization)
    run_to_end(lifecycle.back_up_site(site=site))

    assert run_to_end(services.terminate_site(site=site)) is Outcome.SUCCEEDED
    site.refresh_from_db()
    assert site.status == "terminated"
    assert site.purge_after is not None
    assert site_containers(engine, site) == []
    assert len(site_volumes(engine, site)) == 1
    with pytest.raises(ServiceError) as taken:
        services.sign_up_site(
            organization=organization,
            customer_email="eve@riverside.edu",
            app=site.app,
            plan=site.plan,
            label="ada",
        )
    assert taken.value.code == "hostname_taken"

    [purge] = lifecycle.open_due_purges(now=site.purge_after)
    assert run_to_end(purge) is Outcome.SUCCEEDED
    site.refresh_from_db()
    assert site.purged_at is not None
    assert site_volumes(engine, site) == []
    assert site_containers(engine, site) == []
    assert not Backup.objects.filter(site=site, deleted_at__isnull=True).exists()
    assert lifecycle.open_due_purges(now=site.created_at.replace(year=2100)) == []


def test_undo_terminate_brings_data_back(engine, organization: Organization) -> None:
    site = running_site(organization)
    write_file(engine, site, "note.txt", "survivor")
    run_to_end(services.terminate_site(site=site))

    assert run_to_end(lifecycle.undo_terminate(site=site)) is Outcome.SUCCEEDED

    site.refresh_from_db()
    assert site.status == "running"
    assert site.desired_status == "running"
    assert site.purge_after is None
    assert body(engine, site, "/note.txt") == "survivor"
    with pytest.raises(ServiceError) as again:
        lifecycle.undo_terminate(site=site)
    assert again.value.code == "invalid_state"


def test_terminate_with_zero_retention_purges(engine, organization, settings) -> None:
    settings.HOSTYARD_RETENTION_DAYS = 0
    site = running_site(organization)

    assert run_to_end(services.terminate_site(site=site)) is Outcome.SUCCEEDED

    site.refresh_from_db()
    assert site.status == "terminated"
    assert site.purged_at is not None
    assert site_containers(engine, site) == []
    assert site_volumes(engine, site) == []
    with pytest.raises(ServiceError) as purged:
        lifecycle.undo_terminate(site=site)
    assert purged.value.code == "invalid_state"
