"""The sites API: signup, listing, tenancy, bad input and idempotency (no worker runs)."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from hosting.models import ApiKey, Customer, Organization, Site
from provisioning.models import Operation
from tests.fixtures.platform import client_for

SIGNUP = {"customer_email": "ada@riverside.edu", "app": "demo", "plan": "micro", "label": "ada"}


def nothing_created() -> bool:
    return not Site.objects.exists() and not Operation.objects.exists()


def test_signup_answers_202_with_operation(api: APIClient) -> None:
    response = api.post("/api/v1/sites", SIGNUP, format="json")

    assert response.status_code == 202
    body = response.json()
    assert body["hostname"] == "ada.sites.hostyard.test"
    assert body["status"] == "pending"
    assert body["operation"]["kind"] == "create"
    assert body["operation"]["status"] == "queued"
    assert response["Location"].endswith(f"/api/v1/operations/{body['operation']['id']}")


def test_operation_lists_its_steps(api: APIClient) -> None:
    signup = api.post("/api/v1/sites", SIGNUP, format="json").json()

    operation = api.get(signup["operation"]["url"]).json()

    names = [step["name"] for step in operation["steps"]]
    assert names[:2] == ["create_volume", "create_container"]
    assert all(step["status"] == "pending" for step in operation["steps"])
    assert operation["site"] == signup["id"]


def test_signup_generates_label_when_omitted(api: APIClient) -> None:
    body = {key: value for key, value in SIGNUP.items() if key != "label"}

    response = api.post("/api/v1/sites", body, format="json")

    assert response.status_code == 202
    assert response.json()["label"].startswith("demo-")


def test_site_list_and_detail(api: APIClient) -> None:
    created = api.post("/api/v1/sites", SIGNUP, format="json").json()

    listing = api.get("/api/v1/sites").json()
    detail = api.get(f"/api/v1/sites/{created['id']}").json()

    assert [site["id"] for site in listing["results"]] == [created["id"]]
    assert detail["customer_email"] == "ada@riverside.edu"


def test_list_filters_by_status(api: APIClient) -> None:
    api.post("/api/v1/sites", SIGNUP, format="json")

    assert len(api.get("/api/v1/sites?status=pending").json()["results"]) == 1
    assert len(api.get("/api/v1/sites?status=running").json()["results"]) == 0


def test_terminate_answers_202(api: APIClient) -> None:
    created = api.post("/api/v1/sites", SIGNUP, format="json").json()

    response = api.delete(f"/api/v1/sites/{created['id']}")

    assert response.status_code == 202
    assert response.json()["operation"]["kind"] == "terminate"
    assert response.json()["desired_status"] == "terminated"
    create = Operation.objects.get(kind="create")
    assert create.status == "cancelled"


def test_missing_key_answers_401(catalog: None) -> None:
    response = APIClient().get("/api/v1/sites")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_revoked_key_answers_401(organization: Organization, catalog: None) -> None:
    key, raw_key = ApiKey.issue(organization=organization, name="old")
    key.revoke()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")

    response = client.get("/api/v1/sites")

    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_expired_key_answers_401(organization: Organization, catalog: None) -> None:
    client = client_for(organization, expires_at=timezone.now() - timedelta(seconds=1))

    assert client.get("/api/v1/sites").status_code == 401


def test_read_only_key_cannot_sign_up(organization: Organization, catalog: None) -> None:
    client = client_for(organization, scopes=["sites:read"])

    response = client.post("/api/v1/sites", SIGNUP, format="json")

    assert response.status_code == 403
    assert nothing_created()


def test_key_records_last_use(organization: Organization, catalog: None) -> None:
    client = client_for(organization)

    client.get("/api/v1/sites")

    assert ApiKey.objects.get(organization=organization).last_used_at is not None


def test_other_organization_gets_404(api: APIClient, other_api: APIClient) -> None:
    created = api.post("/api/v1/sites", SIGNUP, format="json").json()

    site = other_api.get(f"/api/v1/sites/{created['id']}")
    operation = other_api.get(f"/api/v1/operations/{created['operation']['id']}")
    terminate = other_api.delete(f"/api/v1/sites/{created['id']}")
    listing = other_api.get("/api/v1/sites").json()

    assert site.status_code == 404
    assert operation.status_code == 404
    assert terminate.status_code == 404
    assert listing["results"] == []
    assert Site.objects.get().desired_status == "running"


def test_unknown_site_id_gets_404(api: APIClient) -> None:
    assert api.get(f"/api/v1/sites/{uuid.uuid4()}").status_code == 404


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"app": "nosuchapp"}, "app", "Unknown app"),
        ({"plan": "gold"}, "plan", "Unknown plan"),
        ({"label": "Bad_Label!"}, "label", "a-z, 0-9"),
        ({"label": "ab"}, "label", "3 to 40"),
        ({"label": "-edge"}, "label", "a-z, 0-9"),
        ({"label": "www"}, "label", "reserved"),
        ({"customer_email": "not-an-email"}, "customer_email", "valid email"),
        ({"app": "ghost"}, "plan", "at least 256 MiB"),
    ],
)
def test_bad_input_answers_400(api: APIClient, change: dict, field: str, fragment: str) -> None:
    response = api.post("/api/v1/sites", {**SIGNUP, **change}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"]
    assert fragment in str(error["fields"][field])
    assert nothing_created()
    assert not Customer.objects.exists()


@pytest.mark.parametrize("missing", ["customer_email", "app", "plan"])
def test_missing_field_answers_400(api: APIClient, missing: str) -> None:
    body = {key: value for key, value in SIGNUP.items() if key != missing}

    response = api.post("/api/v1/sites", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"][missing] == ["This field is required."]
    assert missing in response.json()["error"]["message"]
    assert nothing_created()


def test_taken_label_answers_409(api: APIClient, other_api: APIClient) -> None:
    api.post("/api/v1/sites", SIGNUP, format="json")

    response = other_api.post("/api/v1/sites", {**SIGNUP, "customer_email": "b@x.org"},
                              format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "hostname_taken"
    assert Site.objects.count() == 1


def test_customer_site_quota_answers_409(api: APIClient) -> None:
    for label in ("one", "two", "three"):
        accepted = api.post("/api/v1/sites", {**SIGNUP, "label": label}, format="json")
        assert accepted.status_code == 202

    response = api.post("/api/v1/sites", {**SIGNUP, "label": "four"}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["quota"] == "sites_per_customer"
    assert error["limit"] == 3
    assert error["used"] == 3


def test_same_idempotency_key_replays_answer(api: APIClient) -> None:
    first = api.post("/api/v1/sites", SIGNUP, format="json", HTTP_IDEMPOTENCY_KEY="order-17")
    second = api.post("/api/v1/sites", SIGNUP, format="json", HTTP_IDEMPOTENCY_KEY="order-17")

    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Site.objects.count() == 1


def test_reused_idempotency_key_answers_422(api: APIClient) -> None:
    api.post("/api/v1/sites", SIGNUP, format="json", HTTP_IDEMPOTENCY_KEY="order-18")

    response = api.post("/api/v1/sites", {**SIGNUP, "label": "other"}, format="json",
                        HTTP_IDEMPOTENCY_KEY="order-18")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Site.objects.count() == 1


def test_idempotency_keys_are_per_organization(api: APIClient, other_api: APIClient) -> None:
    api.post("/api/v1/sites", SIGNUP, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    response = other_api.post("/api/v1/sites", {**SIGNUP, "label": "bob"}, format="json",
                              HTTP_IDEMPOTENCY_KEY="k1")

    assert response.status_code == 202
    assert Site.objects.count() == 2


def test_rejected_request_frees_idempotency_key(api: APIClient) -> None:
    bad = api.post("/api/v1/sites", {**SIGNUP, "plan": "gold"}, format="json",
                   HTTP_IDEMPOTENCY_KEY="k2")
    retried = api.post("/api/v1/sites", {**SIGNUP, "plan": "gold"}, format="json",
                       HTTP_IDEMPOTENCY_KEY="k2")

    assert bad.status_code == 400
    assert retried.status_code == 400
    assert "Idempotent-Replayed" not in retried


@pytest.mark.django_db(transaction=True)
def test_concurrent_idempotent_signups_make_one_site(catalog: None) -> None:
    organization = Organization.objects.create(name="Rush", slug="rush")
    client = client_for(organization)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def sign_up() -> None:
        try:
            response = client.post("/api/v1/sites", SIGNUP, format="json",
                                   HTTP_IDEMPOTENCY_KEY="semester-start")
            with lock:
                answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_up) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(answers) == 20
    assert {status for status, _ in answers} == {202}
    assert len({body["id"] for _, body in answers}) == 1
    assert Site.objects.count() == 1
    assert Operation.objects.count() == 1


def test_site_list_query_count_is_constant(api: APIClient, organization: Organization) -> None:
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get("/api/v1/sites?page_size=100").status_code == 200
        return len(queries)

    api.post("/api/v1/sites", SIGNUP, format="json")
    few = count_queries()
    customer = Customer.objects.get()
    site = Site.objects.get()
    for index in range(30):
        Site.objects.create(organization=organization, customer=customer, plan=site.plan,
                            app=site.app, app_version="1.0", label=f"bulk{index}",
                            hostname=f"bulk{index}.sites.hostyard.test")

    assert count_queries() == few


def test_openapi_schema_is_served(db: None) -> None:
    response = APIClient().get("/api/v1/schema")

    assert response.status_code == 200
    assert b"/api/v1/sites" in response.content
