"""Real responses checked against the OpenAPI schema the API publishes (docs/openapi.yaml).

Two layers, both driving the Django WSGI application in-process (no server), through schemathesis:

- every list operation is called with rows to list, and its body validated against the response
  schema of that operation: the lists used to be documented as bare arrays while they answer objects;
- schemathesis generates a few requests per operation, for a few operations of every area, and
  checks that none is a 5xx and that each documented response matches its schema. The examples are
  bounded and derandomized, so a run is fast and repeatable.
"""

from __future__ import annotations

import functools
import io
import json
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = pytest.mark.django_db

APP = WSGIHandler()


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Any:
    """The WSGI handler closes the database connection as a request starts and ends, which would end
    the test's transaction; Django's own test client unhooks the same signals for the same reason."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@functools.cache
def openapi() -> dict[str, Any]:
    """The schema as `make schema` writes it, generated in-process (JSON round trip: plain types)."""
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


@functools.cache
def api_schema() -> Any:
    return schemathesis.openapi.from_dict(openapi())


@pytest.fixture
def unthrottled(owner: Any) -> None:
    """A plan whose per-minute API limit the generated requests cannot reach (the limits have tests
    of their own, tests/billing)."""
    from billing.models import Plan, UserPlan

    plan = Plan.objects.create(code="schema-checks", name="Schema checks", api_calls_per_minute=100_000,
                               generations_per_hour=100_000, uploads_per_day=100_000)
    UserPlan.objects.create(user=owner, plan=plan)


@pytest.fixture
def auth(owner: Any, unthrottled: None) -> dict[str, str]:
    from accounts.services import api_token_create

    _, token = api_token_create(user=owner, name="schema checks")
    return {"Authorization": f"Bearer {token}"}


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def rows(owner: Any, project: Any, catalog: None) -> dict[str, Any]:
    """One of everything a list operation lists."""
    from assets.library.collections import collection_create
    from assets.library.organise import asset_update
    from assets.services import asset_create_from_bytes
    from assets.sharing.shares import share_create
    from billing.models import Notification
    from generations.services import generation_create

    asset = asset_create_from_bytes(project=project, data=png_bytes(), name="still.png")
    asset_update(user=owner, asset_id=asset.pk, tags=["poster"])
    collection = collection_create(user=owner, name="Picks", project_id=project.pk)
    share_create(user=owner, target="asset", target_id=asset.pk)
    generation = generation_create(user=owner, project_id=project.pk, model_id="local/sketch",
                                   inputs={"prompt": "a lighthouse"})
    Notification.objects.create(user=owner, kind="budget", message="80% of this month's budget used.")
    return {"project": project, "asset": asset, "collection": collection, "generation": generation}


LIST_OPERATIONS = [
    "/api/v1/projects", "/api/v1/models", "/api/v1/generations", "/api/v1/assets", "/api/v1/tags",
    "/api/v1/collections", "/api/v1/shares", "/api/v1/provider-keys", "/api/v1/notifications",
    "/api/v1/credit-packs", "/api/v1/checkout-sessions", "/api/v1/usage",
]


@pytest.mark.parametrize("path", LIST_OPERATIONS)
def test_each_list_operation_answers_the_body_its_schema_documents(
        path: str, auth: dict[str, str], rows: dict[str, Any]) -> None:
    operation = api_schema()[path]["GET"]
    response = operation.Case().call(app=APP, headers=auth)
    assert response.status_code == 200, response.text[:500]
    operation.validate_response(response)  # raises, naming the mismatch, when the body does not fit
    body = response.json()
    if path != "/api/v1/tags":  # tags answer a bare array, as documented
        assert isinstance(body, dict) and isinstance(body["results"], list)


def test_a_paginated_list_documents_its_next_and_previous_links(auth: dict[str, str], rows: dict[str, Any]) -> None:
    page = openapi()["paths"]["/api/v1/projects"]["get"]
    component = page["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    body = openapi()["components"]["schemas"][component]
    assert set(body["required"]) == {"next", "previous", "results"}
    assert {p["name"] for p in page["parameters"]} >= {"cursor", "page_size"}


def test_the_usage_report_is_documented_with_the_from_and_to_it_answers(auth: dict[str, str]) -> None:
    usage = openapi()["components"]["schemas"]["Usage"]["properties"]
    assert {"from", "to"} <= set(usage) and not {"date_from", "date_to"} & set(usage)
    response = api_schema()["/api/v1/usage"]["GET"].Case(query={"from": "2026-01-01", "to": "2026-01-31"}).call(
        app=APP, headers=auth)
    assert response.json()["from"] == "2026-01-01"


# A few operations of every area: reads with generated filters and ids, and writes with generated bodies.
FUZZED_OPERATIONS = [
    ("GET", "/api/v1/me"), ("GET", "/api/v1/provider-keys"), ("GET", "/api/v1/referrals/code"),
    ("GET", "/api/v1/projects"), ("POST", "/api/v1/projects"), ("GET", "/api/v1/projects/{id}"),
    ("GET", "/api/v1/models"),
    ("GET", "/api/v1/generations"), ("POST", "/api/v1/generations/estimate"),
    ("GET", "/api/v1/assets"), ("GET", "/api/v1/tags"), ("GET", "/api/v1/storage"),
    ("GET", "/api/v1/collections"), ("POST", "/api/v1/collections"),
    ("GET", "/api/v1/shares"), ("POST", "/api/v1/shares"),
    ("GET", "/api/v1/credit-packs"), ("GET", "/api/v1/checkout-sessions"),
    ("PUT", "/api/v1/me/budget"), ("GET", "/api/v1/notifications"),
    ("GET", "/api/v1/usage"),
]


@pytest.mark.parametrize(("method", "path"), FUZZED_OPERATIONS)
def test_generated_requests_get_no_server_error_and_a_documented_body(
        method: str, path: str, auth: dict[str, str], rows: dict[str, Any]) -> None:
    operation = api_schema()[path][method]

    @settings(max_examples=6, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        response = case.call(app=APP, headers=auth)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    run()


def test_the_check_refuses_a_list_body_documented_as_a_bare_array(auth: dict[str, str], rows: dict[str, Any]) -> None:
    """What the schema said before: the same response fails against the old bare-array document."""
    import copy

    old = copy.deepcopy(openapi())
    listed = old["paths"]["/api/v1/projects"]["get"]["responses"]["200"]["content"]["application/json"]
    listed["schema"] = {"type": "array", "items": {"$ref": "#/components/schemas/Project"}}
    operation = schemathesis.openapi.from_dict(old)["/api/v1/projects"]["GET"]
    response = operation.Case().call(app=APP, headers=auth)
    assert response.status_code == 200
    assert not operation.is_valid_response(response)
