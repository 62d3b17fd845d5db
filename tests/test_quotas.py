"""Quota checks on signup and plan change, and organization caps under concurrency."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from hosting.errors import ServiceError
from hosting.models import App, Customer, Organization, Plan, Site, SiteStatus
from provisioning import quotas
from provisioning.models import Operation
from provisioning.usage_models import MIB, SiteUsage
from tests.fixtures.platform import client_for

SIGNUP = {"customer_email": "ada@riverside.edu", "app": "demo", "plan": "micro"}


def sign_up(api: APIClient, index: int, plan: str = "micro"):
    body = {**SIGNUP, "customer_email": f"student{index}@riverside.edu", "plan": plan}
    return api.post("/api/v1/sites", body, format="json")


def live_site_count(organization: Organization) -> int:
    return Site.objects.filter(organization=organization, status__in=SiteStatus.live()).count()


@pytest.mark.parametrize(
    ("cap", "value", "quota", "allowed", "used"),
    [
        ("max_sites", 2, "organization_sites", 2, 2),
        ("max_memory_mb", 3 * 64, "organization_memory_mb", 3, 3 * 64),
        ("max_disk_mb", 2 * 256 + 100, "organization_disk_mb", 2, 2 * 256),
    ],
)
def test_organization_cap_rejects_signup(
    api: APIClient,
    organization: Organization,
    cap: str,
    value: int,
    quota: str,
    allowed: int,
    used: int,
) -> None:
    Organization.objects.filter(pk=organization.pk).update(**{cap: value})
    for index in range(allowed):
        assert sign_up(api, index).status_code == 202

    response = sign_up(api, allowed)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["quota"] == quota
    assert error["limit"] == value
    assert error["used"] == used
    assert organization.slug in error["message"]
    assert Site.objects.count() == allowed
    assert Operation.objects.count() == allowed
    assert not Customer.objects.filter(email=f"student{allowed}@riverside.edu").exists()


def test_memory_cap_names_plan_and_use(api: APIClient, organization: Organization) -> None:
    Organization.objects.filter(pk=organization.pk).update(max_memory_mb=500)
    assert sign_up(api, 0, plan="micro").status_code == 202

    response = sign_up(api, 1, plan="starter")

    error = response.json()["error"]
    assert response.status_code == 409
    assert error["used"] == 64
    assert "'starter' needs 512 MiB of memory" in error["message"]
    assert "uses 64 of its 500 MiB" in error["message"]


def test_terminated_sites_free_the_cap(api: APIClient, organization: Organization) -> None:
    Organization.objects.filter(pk=organization.pk).update(max_sites=1)
    first = sign_up(api, 0).json()
    Site.objects.filter(uuid=first["id"]).update(status=SiteStatus.TERMINATED)

    assert sign_up(api, 1).status_code == 202


def make_site(organization: Organization, plan: str, index: int = 0) -> Site:
    customer, _ = Customer.objects.get_or_create(
        organization=organization, email=f"c{index}@riverside.edu"
    )
    return Site.objects.create(
        organization=organization,
        customer=customer,
        plan=Plan.objects.get(slug=plan),
        app=App.objects.get(slug="demo"),
        app_version="1.0",
        label=f"site{index}",
        hostname=f"site{index}.sites.hostyard.test",
        status=SiteStatus.RUNNING,
    )


@pytest.fixture
def site(organization: Organization, catalog: None) -> Site:
    return make_site(organization, "micro")


def test_plan_change_rejects_disk_below_use(site: Site) -> None:
    with pytest.raises(ServiceError) as caught:
        quotas.check_plan_change(
            site=site, new_plan=Plan.objects.get(slug="micro"), disk_used_mb=300
        )

    error = caught.value
    assert error.status == 409
    assert error.code == "quota_exceeded"
    assert error.extra == {"quota": "disk_mb", "limit": 256, "used": 300}
    assert "Delete data first or choose a larger plan" in error.message


def test_plan_change_within_quota_passes(site: Site) -> None:
    quotas.check_plan_change(site=site, new_plan=Plan.objects.get(slug="starter"), disk_used_mb=300)


def test_plan_change_rejects_organization_memory(site: Site, organization) -> None:
    make_site(organization, "micro", index=1)
    Organization.objects.filter(pk=organization.pk).update(max_memory_mb=512)

    with pytest.raises(ServiceError) as caught:
        quotas.check_plan_change(
            site=site, new_plan=Plan.objects.get(slug="starter"), disk_used_mb=0
        )

    assert caught.value.extra == {"quota": "organization_memory_mb", "limit": 512, "used": 128}


def test_plan_change_rejects_organization_disk(site: Site, organization) -> None:
    Organization.objects.filter(pk=organization.pk).update(max_disk_mb=1000)

    with pytest.raises(ServiceError) as caught:
        quotas.check_plan_change(
            site=site, new_plan=Plan.objects.get(slug="starter"), disk_used_mb=0
        )

    assert caught.value.extra == {"quota": "organization_disk_mb", "limit": 1000, "used": 256}


def test_downgrade_passes_when_over_cap(site: Site, organization) -> None:
    Site.objects.filter(pk=site.pk).update(plan=Plan.objects.get(slug="starter"))
    site.refresh_from_db()
    Organization.objects.filter(pk=organization.pk).update(max_memory_mb=100, max_disk_mb=100)

    quotas.check_plan_change(site=site, new_plan=Plan.objects.get(slug="micro"), disk_used_mb=10)


def test_plan_change_rejects_sites_per_customer(site: Site, organization) -> None:
    Plan.objects.create(
        slug="solo",
        name="Solo",
        memory_mb=64,
        cpus="0.25",
        pids_limit=64,
        disk_mb=256,
        max_sites_per_customer=1,
    )
    second = make_site(organization, "micro", index=1)
    Site.objects.filter(pk=second.pk).update(customer=site.customer)

    with pytest.raises(ServiceError) as caught:
        quotas.check_plan_change(site=site, new_plan=Plan.objects.get(slug="solo"), disk_used_mb=0)

    assert caught.value.extra == {"quota": "sites_per_customer", "limit": 1, "used": 2}


def test_disk_used_rounds_up_to_mib(site: Site) -> None:
    assert quotas.disk_used_mb_of(site) == 0
    SiteUsage.objects.create(site=site, volume_bytes=2 * MIB, backup_bytes=1)

    assert quotas.disk_used_mb_of(site) == 3


CONCURRENT_SIGNUPS = 20


@pytest.mark.parametrize(
    ("cap", "value", "allowed"),
    [("max_sites", 5, 5), ("max_memory_mb", 7 * 64, 7), ("max_disk_mb", 4 * 256, 4)],
)
@pytest.mark.django_db(transaction=True)
def test_caps_hold_under_concurrent_signups(
    catalog: None, cap: str, value: int, allowed: int
) -> None:
    organization = Organization.objects.create(name="Rush", slug="rush", **{cap: value})
    client = client_for(organization)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CONCURRENT_SIGNUPS)

    def sign_up_one(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            response = sign_up(client, index)
            with lock:
                answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=sign_up_one, args=(index,)) for index in range(CONCURRENT_SIGNUPS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    statuses = sorted(status for status, _ in answers)
    rejected = [body["error"] for status, body in answers if status == 409]
    assert len(answers) == CONCURRENT_SIGNUPS
    assert statuses.count(202) == allowed
    assert statuses.count(409) == CONCURRENT_SIGNUPS - allowed
    assert {error["code"] for error in rejected} == {"quota_exceeded"}
    assert {error["limit"] for error in rejected} == {value}
    assert live_site_count(organization) == allowed
    assert Operation.objects.filter(site__organization=organization).count() == allowed


def test_suspend_needs_running_site(site: Site) -> None:
    from hosting import services

    Site.objects.filter(pk=site.pk).update(status=SiteStatus.PROVISIONING)
    site.refresh_from_db()

    with pytest.raises(ServiceError) as caught:
        services.suspend_site(site=site, reason="quota")

    assert caught.value.status == 409
    assert caught.value.code == "invalid_state"
    assert "only a running site can be suspended" in caught.value.message
    assert not site.operations.exists()


def test_suspend_twice_returns_same_operation(site: Site) -> None:
    from hosting import services

    first = services.suspend_site(site=site, reason="quota", requested_by="tests")
    second = services.suspend_site(site=site, reason="quota", requested_by="tests")

    site.refresh_from_db()
    assert first.pk == second.pk
    assert first.kind == "suspend"
    assert [step.name for step in first.steps.all()] == ["edge_suspend", "stop_container"]
    assert site.desired_status == "suspended"
    assert site.suspend_reason == "quota"


def test_unsuspend_needs_suspended_site(site: Site) -> None:
    from hosting import services

    with pytest.raises(ServiceError) as caught:
        services.unsuspend_site(site=site)

    assert caught.value.status == 409
    assert "is not suspended" in caught.value.message


def test_unsuspend_clears_reason(site: Site) -> None:
    from hosting import services

    services.suspend_site(site=site, reason="quota")
    operation = services.unsuspend_site(site=site)
    again = services.unsuspend_site(site=site)

    site.refresh_from_db()
    assert operation.kind == "unsuspend"
    assert again.pk == operation.pk
    assert site.desired_status == "running"
    assert site.suspend_reason == ""
