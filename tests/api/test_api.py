"""The REST API as a client sees it: auth, shapes, errors, access, and query counts."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image
from rest_framework.test import APIClient

from billing.services import credits_summary
from generations.models import Generation
from projects.services import project_create

pytestmark = pytest.mark.django_db


def png_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buf, "PNG")
    return buf.getvalue()


def test_requests_without_a_token_are_refused_with_a_json_error() -> None:
    response = APIClient().get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_wrong_token_is_refused() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer st_not-a-real-token")
    assert client.get("/api/v1/me").status_code == 401


def test_me_shows_the_user_and_their_credits(owner_api: APIClient, owner: Any) -> None:
    body = owner_api.get("/api/v1/me").json()
    assert body["email"] == owner.email
    assert body["credits"] == {"balance": 500, "held": 0, "available": 500}


def test_tokens_are_stored_only_as_digests(owner: Any) -> None:
    from accounts.models import ApiToken
    from accounts.services import api_token_create

    row, token = api_token_create(user=owner, name="laptop")
    stored = ApiToken.objects.get(pk=row.pk)
    assert token.startswith("st_")
    assert token not in (stored.digest, stored.token_key)
    assert stored.name == "laptop"


def test_models_lists_the_catalog_and_filters_by_operation(owner_api: APIClient, catalog: None) -> None:
    models = owner_api.get("/api/v1/models").json()["results"]
    ids = {m["id"] for m in models}
    assert {"local/sketch", "local/upscale", "local/remove-background"} <= ids
    upscalers = owner_api.get("/api/v1/models", {"operation": "upscale"}).json()["results"]
    assert "local/upscale" in [m["id"] for m in upscalers]
    assert {m["operation"] for m in upscalers} == {"upscale"}
    assert owner_api.get("/api/v1/models", {"operation": "juggling"}).status_code == 400


def test_a_model_shows_its_schema_and_price(owner_api: APIClient, catalog: None) -> None:
    body = owner_api.get("/api/v1/models/local/sketch").json()
    assert body["input_schema"]["required"] == ["prompt"]
    assert body["price"]["unit"] == "image"
    assert owner_api.get("/api/v1/models/nope/nothing").status_code == 404


def test_an_outsider_gets_404_for_every_route_of_another_users_objects(
        owner_api: APIClient, outsider_api: APIClient, project: Any, catalog: None) -> None:
    upload = owner_api.post("/api/v1/assets", {"project": str(project.pk),
                                               "file": io.BytesIO(png_bytes())}, format="multipart")
    asset_id = upload.json()["id"]
    gen = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                 "inputs": {"prompt": "x"}}, format="json").json()
    routes = [
        ("get", f"/api/v1/projects/{project.pk}", None),
        ("patch", f"/api/v1/projects/{project.pk}", {"name": "mine now"}),
        ("delete", f"/api/v1/projects/{project.pk}", None),
        ("get", f"/api/v1/assets/{asset_id}", None),
        ("get", f"/api/v1/assets/{asset_id}/download", None),
        ("get", f"/api/v1/generations/{gen['id']}", None),
        ("post", f"/api/v1/generations/{gen['id']}/cancel", None),
        ("get", f"/api/v1/assets?project={project.pk}", None),
        ("get", f"/api/v1/generations?project={project.pk}", None),
        ("post", "/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                         "inputs": {"prompt": "x"}}),
        ("post", "/api/v1/generations", {"project": str(project.pk), "model": "local/upscale",
                                         "inputs": {"image": asset_id}}),
    ]
    for method, url, data in routes:
        response = getattr(outsider_api, method)(url, data, format="json")
        assert response.status_code in (404, 400), (method, url, response.status_code)
        if response.status_code == 400:  # the asset reference is reported as not found in *your* projects
            assert "No such asset" in str(response.json()), response.json()
        else:
            assert response.json()["error"]["code"] == "not_found"
    assert outsider_api.get("/api/v1/assets").json()["results"] == []
    assert outsider_api.get("/api/v1/generations").json()["results"] == []
    assert Generation.objects.filter(user__email="outsider@example.com").count() == 0


def test_submitting_holds_the_estimate_and_returns_202(owner_api: APIClient, owner: Any, project: Any,
                                                       catalog: None) -> None:
    response = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                      "inputs": {"prompt": "a red fox", "width": 512}}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert body["credits"]["estimated"] == 1 and body["credits"]["held"] == 1
    assert body["inputs"]["height"] == 768 and isinstance(body["inputs"]["seed"], int)
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 1, "available": 499}


def test_bad_inputs_are_400_naming_the_field_and_hold_nothing(owner_api: APIClient, owner: Any, project: Any,
                                                              catalog: None) -> None:
    cases = [
        ({}, "inputs.prompt"),
        ({"prompt": "x", "width": 100}, "inputs.width"),
        ({"prompt": "x", "style": "cubism"}, "inputs.style"),
        ({"prompt": "   "}, "inputs.prompt"),
        ({"prompt": "x", "colour": "red"}, "inputs"),
    ]
    for inputs, field in cases:
        response = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                          "inputs": inputs}, format="json")
        assert response.status_code == 400
        assert field in response.json()["error"]["fields"], response.json()
    blank = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                   "inputs": {"prompt": " "}}, format="json").json()
    assert blank["error"]["fields"]["inputs.prompt"] == ["This field must not be blank."]
    assert credits_summary(user=owner).held == 0
    assert not Generation.objects.exists()


def test_an_unknown_model_is_400(owner_api: APIClient, project: Any, catalog: None) -> None:
    response = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "acme/dream",
                                                      "inputs": {}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_model"


def test_not_enough_credits_is_402_with_balance_and_estimate(project: Any, catalog: None) -> None:
    from billing.signup import user_create
    from tests.conftest import api_client_for

    poor = user_create(email="poor@example.com", password="x" * 12, starter_credits=0)
    poor_project = project_create(owner=poor, name="Broke")
    response = api_client_for(poor).post("/api/v1/generations", {
        "project": str(poor_project.pk), "model": "local/sketch", "inputs": {"prompt": "x"}}, format="json")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert error["balance"] == 0 and error["estimate"] == 1
    assert not Generation.objects.exists()


def test_max_credits_is_held_in_full_and_one_below_the_estimate_is_400(owner_api: APIClient, owner: Any,
                                                                      project: Any, catalog: None) -> None:
    base = {"project": str(project.pk), "model": "local/sketch", "inputs": {"prompt": "x"}}
    refused = owner_api.post("/api/v1/generations", {**base, "max_credits": 0}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "max_credits_below_estimate"
    assert "max_credits" in refused.json()["error"]["fields"]
    accepted = owner_api.post("/api/v1/generations", {**base, "max_credits": 5}, format="json")
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["max_credits"] == 5 and body["credits"] == {"estimated": 1, "held": 5, "charged": 0}
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 5, "available": 495}


def test_cancel_of_a_queued_job_releases_the_hold(owner_api: APIClient, owner: Any, project: Any,
                                                  catalog: None) -> None:
    gen = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                 "inputs": {"prompt": "x"}}, format="json").json()
    response = owner_api.post(f"/api/v1/generations/{gen['id']}/cancel")
    assert response.json()["status"] == "canceled"
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
    again = owner_api.post(f"/api/v1/generations/{gen['id']}/cancel")
    assert again.status_code == 409


def test_upload_decides_the_type_from_content_and_serves_a_working_download(
        owner_api: APIClient, project: Any) -> None:
    data = png_bytes()
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk),
                                                 "file": _named(data, "photo.jpg")}, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["mime"], body["name"]) == ("image", "image/png", "photo.png")
    assert (body["width"], body["height"]) == (64, 48)
    download = owner_api.get(body["download_url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == data
    assert download["X-Content-Type-Options"] == "nosniff"
    assert "attachment" in download["Content-Disposition"]


def test_upload_refuses_html_named_png_and_stores_nothing(owner_api: APIClient, project: Any, settings: Any) -> None:
    from assets.models import Asset

    response = owner_api.post("/api/v1/assets", {
        "project": str(project.pk), "file": _named(b"<html><script>alert(1)</script></html>", "cat.png")},
        format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["file"]
    assert not Asset.objects.exists()
    media = settings.MEDIA_ROOT
    assert not any(p.is_file() for p in media.rglob("*")) if media.exists() else True


def test_list_endpoints_use_a_constant_number_of_queries(owner_api: APIClient, owner: Any, project: Any,
                                                         catalog: None, django_assert_max_num_queries: Any) -> None:
    for i in range(3):
        owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": _named(png_bytes(), f"{i}.png")},
                       format="multipart")
        owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                               "inputs": {"prompt": f"p{i}"}}, format="json")
    counts = {}
    for url in ["/api/v1/assets", "/api/v1/generations", "/api/v1/projects", "/api/v1/models"]:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert owner_api.get(url).status_code == 200
        counts[url] = len(ctx)
    for i in range(3, 13):
        owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": _named(png_bytes(), f"{i}.png")},
                       format="multipart")
        owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                               "inputs": {"prompt": f"p{i}"}}, format="json")
    for url, before in counts.items():
        with django_assert_max_num_queries(before):
            owner_api.get(url)


def test_the_openapi_schema_is_served() -> None:
    response = APIClient().get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/generations" in response.content


def _named(data: bytes, name: str) -> io.BytesIO:
    fh = io.BytesIO(data)
    fh.name = name
    return fh


def test_the_committed_openapi_schema_is_current_and_valid(tmp_path: Any) -> None:
    """docs/openapi.yaml is what `make schema` writes; a change to the API must update it."""
    from pathlib import Path

    from django.core.management import call_command

    fresh = tmp_path / "openapi.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(fresh))
    committed = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
    assert committed.read_text() == fresh.read_text(), "run `make schema` and commit docs/openapi.yaml"


def test_list_filters_reject_unknown_values_with_400(owner_api: APIClient) -> None:
    assert owner_api.get("/api/v1/assets", {"kind": "hologram"}).json()["error"]["fields"]["kind"]
    assert owner_api.get("/api/v1/generations", {"status": "dreaming"}).status_code == 400
    assert owner_api.get("/api/v1/generations", {"project": "not-a-uuid"}).status_code == 400
