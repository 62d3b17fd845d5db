"""The lifecycle API, admin actions and commands: responses, queueing, 409s, tenancy."""

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from hosting.models import Backup, Site
from provisioning.models import Operation

SIGNUP = {"customer_email": "ada@riverside.edu", "app": "demo", "plan": "micro", "label": "ada"}


def running(api: APIClient) -> dict:
    """Sign a site up and mark it running, as if its create had finished."""
    created = api.post("/api/v1/sites", SIGNUP, format="json").json()
    Operation.objects.filter(uuid=created["operation"]["id"]).update(status="succeeded")
    Site.objects.filter(uuid=created["id"]).update(status="running")
    return created


def test_suspend_answers_202_with_operation(api: APIClient) -> None:
    site = running(api)

    response = api.post(f"/api/v1/sites/{site['id']}/suspend", {"reason": "billing"}, format="json")

    body = response.json()
    assert response.status_code == 202
    assert body["operation"]["kind"] == "suspend"
    assert body["operation"]["queued_behind"] is None
    assert body["desired_status"] == "suspended"
    assert body["suspend_reason"] == "billing"
    assert response["Location"].endswith(f"/api/v1/operations/{body['operation']['id']}")


def test_second_request_is_queued_behind_first(api: APIClient) -> None:
    site = running(api)
    first = api.post(f"/api/v1/sites/{site['id']}/restart").json()

    second = api.post(f"/api/v1/sites/{site['id']}/backups")

    assert second.status_code == 202
    assert second.json()["operation"]["queued_behind"] == first["operation"]["id"]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("unsuspend", {}),
        ("update", {"version": "1.0"}),
        ("undo-terminate", {}),
    ],
)
def test_forbidden_transition_answers_409(api: APIClient, path: str, payload: dict) -> None:
    site = running(api)

    response = api.post(f"/api/v1/sites/{site['id']}/{path}", payload, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"
    assert site["hostname"] in response.json()["error"]["message"]


def test_suspend_rejects_unknown_reason(api: APIClient) -> None:
    site = running(api)

    response = api.post(f"/api/v1/sites/{site['id']}/suspend", {"reason": "mood"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "reason" in response.json()["error"]["fields"]


def test_change_plan_answers_202(api: APIClient, engine) -> None:
    site = running(api)

    response = api.post(
        f"/api/v1/sites/{site['id']}/change-plan", {"plan": "starter"}, format="json"
    )

    assert response.status_code == 202
    assert response.json()["plan"] == "starter"
    assert response.json()["operation"]["kind"] == "change_plan"


def test_change_plan_rejects_unknown_plan(api: APIClient) -> None:
    site = running(api)

    response = api.post(f"/api/v1/sites/{site['id']}/change-plan", {"plan": "huge"}, format="json")

    assert response.status_code == 400
    assert "Unknown plan 'huge'" in response.json()["error"]["message"]


def test_update_answers_202_and_keeps_version(api: APIClient) -> None:
    site = running(api)

    response = api.post(f"/api/v1/sites/{site['id']}/update", {"version": "1.1"}, format="json")

    assert response.status_code == 202
    assert response.json()["app_version"] == "1.0"
    # The version to roll back to is recorded when the update starts, not here.
    assert Operation.objects.get(kind="update").params == {"version": "1.1"}


def test_put_on_site_is_not_an_update(api: APIClient) -> None:
    site = running(api)

    assert api.put(f"/api/v1/sites/{site['id']}", {"version": "1.1"}).status_code == 405


def test_backups_listed_and_restored(api: APIClient) -> None:
    site = running(api)
    record = Site.objects.get(uuid=site["id"])
    backup = Backup.objects.create(
        site=record,
        operation_uuid="00000000-0000-4000-8000-000000000001",
        path="/nonexistent/backup.tar",
        size_bytes=2048,
        app_version="1.0",
    )

    listing = api.get(f"/api/v1/sites/{site['id']}/backups").json()
    restore = api.post(f"/api/v1/sites/{site['id']}/backups/{backup.uuid}/restore")

    assert listing == [
        {
            "id": str(backup.uuid),
            "kind": "manual",
            "app_version": "1.0",
            "size_bytes": 2048,
            "created_at": listing[0]["created_at"],
        }
    ]
    assert restore.status_code == 202
    assert restore.json()["operation"]["kind"] == "restore"


def test_other_organization_gets_404(api: APIClient, other_api: APIClient) -> None:
    site = running(api)

    for path in ("suspend", "restart", "backups", "update"):
        response = other_api.post(f"/api/v1/sites/{site['id']}/{path}", {"reason": "staff"})
        assert response.status_code == 404, path
    assert other_api.get(f"/api/v1/sites/{site['id']}/backups").status_code == 404


def test_site_command_suspends(api: APIClient) -> None:
    site = running(api)
    output = io.StringIO()

    call_command("site", "suspend", site["hostname"], "--reason", "quota", stdout=output)

    assert "suspend operation" in output.getvalue()
    assert Site.objects.get(uuid=site["id"]).suspend_reason == "quota"


def test_site_command_reports_rejection(api: APIClient) -> None:
    site = running(api)

    with pytest.raises(CommandError, match="invalid_state: Cannot unsuspend"):
        call_command("site", "unsuspend", site["id"])
    with pytest.raises(CommandError, match="No site with hostname or id 'nope'"):
        call_command("site", "restart", "nope")


def test_admin_suspend_action(api: APIClient, client) -> None:
    site = running(api)
    staff = User.objects.create_superuser("staff", "staff@example.test", "pw")
    client.force_login(staff)
    record = Site.objects.get(uuid=site["id"])

    response = client.post(
        "/admin/hosting/site/",
        {"action": "suspend", "_selected_action": [record.pk]},
        follow=True,
    )

    record.refresh_from_db()
    assert response.status_code == 200
    assert record.desired_status == "suspended"
    assert record.suspend_reason == "staff"
    assert Operation.objects.filter(
        site=record, kind="suspend", requested_by="staff:staff"
    ).exists()
