"""The reconciler against the real Docker Engine: drift found, repaired and recorded."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from hosting import lifecycle
from hosting.models import Organization, Site, SiteEvent
from provisioning.drivers.runtime.base import site_labels
from provisioning.engine.runner import Outcome
from provisioning.models import Operation, StrayContainer
from provisioning.reconciler import reconcile
from tests.lifecycle_helpers import app_container, run_to_end, running_site, site_containers

# Fixtures: the engine reached through a counting proxy.
from tests.test_faults import docker_proxy, engine_via_proxy  # noqa: F401

pytestmark = pytest.mark.usefixtures("catalog")


def opened_operation(site) -> Operation:
    return site.operations.filter(requested_by="reconciler").get()


def test_deleted_container_is_recreated(engine, organization: Organization) -> None:
    site = running_site(organization)
    app_container(engine, site).remove(force=True)

    report = reconcile()

    assert report.opened == [(str(site.uuid), "repair", "container missing")]
    assert run_to_end(opened_operation(site)) is Outcome.SUCCEEDED
    assert app_container(engine, site).status == "running"
    event = SiteEvent.objects.get(site=site, kind="drift_repair")
    assert "container missing" in event.message


def test_stopped_container_is_restarted(engine, organization: Organization) -> None:
    site = running_site(organization)
    app_container(engine, site).stop(timeout=5)

    report = reconcile()

    assert report.opened == [(str(site.uuid), "restart", "container exited")]
    assert run_to_end(opened_operation(site)) is Outcome.SUCCEEDED
    assert app_container(engine, site).status == "running"
    assert len(site_containers(engine, site)) == 1


def test_suspended_site_started_by_hand_is_stopped(engine, organization: Organization) -> None:
    site = running_site(organization)
    run_to_end(lifecycle.suspend_site(site=site, reason="billing"))
    app_container(engine, site).start()

    report = reconcile()

    assert report.opened == [(str(site.uuid), "suspend", "container running while suspended")]
    assert run_to_end(opened_operation(site)) is Outcome.SUCCEEDED
    site.refresh_from_db()
    assert app_container(engine, site).status == "exited"
    assert site.status == "suspended"
    assert site.suspend_reason == "billing"


def test_site_in_step_opens_nothing(engine, organization: Organization) -> None:
    site = running_site(organization)

    report = reconcile()

    assert report.opened == []
    assert report.strays_found == []
    assert report.sites_checked == 1
    assert site.operations.count() == 1


def test_busy_site_is_left_to_its_operation(engine, organization: Organization) -> None:
    site = running_site(organization)
    app_container(engine, site).remove(force=True)
    lifecycle.restart_site(site=site)

    assert reconcile().opened == []


def test_stray_reported_then_removed_after_grace(engine, organization, settings) -> None:
    settings.HOSTYARD_STRAY_GRACE_SECONDS = 600
    stray_site = str(uuid.uuid4())
    stray = engine.containers.create(
        "hostyard/busybox:1",
        command=["true"],
        name=f"hostyard-{stray_site}",
        labels=site_labels(stray_site, deployment=settings.HOSTYARD_DEPLOYMENT),
        network_mode="none",
    )

    first = reconcile()
    record = StrayContainer.objects.get(container_id=stray.id)
    assert first.strays_found == [stray.id]
    assert first.strays_removed == []
    assert record.site_uuid == stray_site
    assert engine.containers.get(stray.id).id == stray.id

    later = timezone.now() + timedelta(seconds=601)
    second = reconcile(now=later)
    record.refresh_from_db()
    assert second.strays_removed == [stray.id]
    assert record.removed_at is not None
    assert engine.containers.list(all=True, filters={"id": stray.id}) == []


def test_terminated_site_container_is_stray(engine, organization, settings) -> None:
    settings.HOSTYARD_STRAY_GRACE_SECONDS = 0
    site = running_site(organization)
    container = app_container(engine, site)
    Site.objects.filter(pk=site.pk).update(status="terminated", desired_status="terminated")

    report = reconcile()

    assert report.strays_removed == [container.id]
    assert site_containers(engine, site) == []
    assert SiteEvent.objects.filter(site=site, kind="stray_container").exists()


def test_scan_makes_one_engine_call(engine, organization, request) -> None:
    proxy = request.getfixturevalue("engine_via_proxy")
    sites = [running_site(organization, label=label) for label in ("ada", "bob", "cyd")]
    app_container(engine, sites[0]).remove(force=True)
    proxy.seen.clear()

    report = reconcile()

    assert report.sites_checked == 3
    assert [kind for _, kind, _ in report.opened] == ["repair"]
    assert len(proxy.seen) == 1
    assert proxy.count(r"GET /v[\d.]+/containers/json\?") == 1
