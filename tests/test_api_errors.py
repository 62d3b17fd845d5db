"""Bad input and unknown paths get the one JSON error shape with a 4xx, never a 500."""

import pytest
from django.contrib.admin.sites import site as admin_site
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from hosting.models import Organization, Site
from provisioning.models import Operation
from tests.fixtures.platform import client_for

SIGNUP = {"customer_email": "ada@riverside.edu", "app": "demo", "plan": "micro", "label": "ada"}


def test_overlong_email_answers_400(api: APIClient) -> None:
    email = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 60 + ".com"

    response = api.post("/api/v1/sites", {**SIGNUP, "customer_email": email}, format="json")

    assert response.status_code == 400
    assert "customer_email" in response.json()["error"]["fields"]
    assert not Site.objects.exists()


def test_deeply_nested_json_answers_400(api: APIClient) -> None:
    body = "[" * 100_000 + "]" * 100_000

    response = api.post("/api/v1/sites", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_unknown_field_is_rejected_with_hint(api: APIClient) -> None:
    body = {key: value for key, value in SIGNUP.items() if key != "label"} | {"lable": "mine"}

    response = api.post("/api/v1/sites", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["lable"] == ["Unknown field. Did you mean 'label'?"]
    assert not Site.objects.exists()


def test_form_encoded_body_answers_415(api: APIClient) -> None:
    response = api.post("/api/v1/sites", SIGNUP)

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_huge_value_is_not_echoed_whole(api: APIClient) -> None:
    response = api.post("/api/v1/sites", {**SIGNUP, "app": "x" * 100_000}, format="json")

    assert response.status_code == 400
    assert len(response.content) < 2_000


def test_garbage_cursor_answers_400(api: APIClient) -> None:
    response = api.get("/api/v1/sites?cursor=garbage")

    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [("/api/v1/sites/", "Remove the trailing slash"), ("/api/v2/sites", "No API endpoint")],
)
def test_unknown_api_path_answers_json_404(api: APIClient, path: str, fragment: str) -> None:
    response = api.get(path)

    assert response.status_code == 404
    assert fragment in response.json()["error"]["message"]


def test_oversized_body_answers_413(api: APIClient, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000

    response = api.post("/api/v1/sites", {**SIGNUP, "customer_name": "n" * 2_000}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Site.objects.exists()


def test_missing_scope_is_named(organization: Organization, catalog: None) -> None:
    client = client_for(organization, scopes=["sites:read"])

    response = client.post("/api/v1/sites", SIGNUP, format="json")

    assert response.status_code == 403
    assert "'sites:write'" in response.json()["error"]["message"]


def test_site_operations_are_paginated(api: APIClient) -> None:
    created = api.post("/api/v1/sites", SIGNUP, format="json").json()

    page = api.get(f"/api/v1/sites/{created['id']}/operations").json()

    assert [operation["id"] for operation in page["results"]] == [created["operation"]["id"]]
    assert page["next"] is None


def test_terminated_site_delete_is_idempotent(api: APIClient) -> None:
    created = api.post("/api/v1/sites", SIGNUP, format="json").json()
    first = api.delete(f"/api/v1/sites/{created['id']}")
    Site.objects.update(status="terminated")

    again = api.delete(f"/api/v1/sites/{created['id']}")

    assert again.status_code == 202
    assert again.json()["operation"]["id"] == first.json()["operation"]["id"]
    assert Operation.objects.filter(kind="terminate").count() == 1


def test_admin_cannot_add_or_delete_sites(db: None) -> None:
    request = RequestFactory().get("/admin/")
    site_admin = admin_site._registry[Site]
    operation_admin = admin_site._registry[Operation]

    assert not site_admin.has_add_permission(request)
    assert not site_admin.has_delete_permission(request)
    assert not operation_admin.has_add_permission(request)
    assert not operation_admin.has_delete_permission(request)
    assert "plan" in site_admin.readonly_fields
    assert "organization" in site_admin.readonly_fields


def test_non_api_404_stays_html(db: None) -> None:
    response = Client().get("/no-such-page")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
