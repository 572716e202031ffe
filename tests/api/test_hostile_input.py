"""Hostile bodies: deep nesting, oversized bodies and huge values answer 4xx in the API's error shape,
store nothing and never echo the value back whole."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rest_framework.test import APIClient

from billing.services import credits_summary
from core.errors import InvalidRequest
from core.parsers import MAX_INPUTS_DEPTH, MAX_JSON_DEPTH, StudioJSONParser, json_depth_exceeds
from generations.models import Generation
from generations.services import generation_estimate
from projects.models import Project

pytestmark = pytest.mark.django_db


def nested(depth: int, leaf: Any = 1) -> str:
    return "[" * depth + str(leaf) + "]" * depth


def post_raw(client: APIClient, path: str, body: str | bytes, content_type: str = "application/json") -> Any:
    return client.generic("POST", path, body, content_type=content_type)


def test_a_body_nested_a_thousand_levels_deep_is_a_400_in_the_json_error_shape(owner_api: APIClient) -> None:
    response = post_raw(owner_api, "/api/v1/projects", '{"name": "x", "tags": ' + nested(1000) + "}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_deep"
    assert not Project.objects.exists()


def test_a_body_just_past_the_depth_cap_is_refused_and_one_at_the_cap_is_parsed(owner_api: APIClient) -> None:
    # {"name": ..., "tags": [[...]]}: the object is one level, the tags list the rest.
    too_deep = post_raw(owner_api, "/api/v1/projects", '{"name": "x", "tags": ' + nested(MAX_JSON_DEPTH) + "}")
    assert too_deep.status_code == 400
    assert too_deep.json()["error"]["code"] == "too_deep"
    at_cap = StudioJSONParser().parse(io.BytesIO(('{"tags": ' + nested(MAX_JSON_DEPTH - 1) + "}").encode()))
    assert json_depth_exceeds(at_cap, MAX_JSON_DEPTH - 1)


def test_the_depth_check_does_not_recurse_on_a_hundred_thousand_levels() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert json_depth_exceeds(value, 32)
    assert not json_depth_exceeds([[{"a": [1]}]], 4)
    assert json_depth_exceeds([[{"a": [1]}]], 3)


def test_generation_inputs_nested_past_their_cap_are_a_400_and_hold_nothing(
        owner_api: APIClient, owner: Any, project: Any, catalog: None) -> None:
    inputs = '{"prompt": "a fox", "extra": ' + nested(MAX_INPUTS_DEPTH + 1) + "}"
    body = f'{{"project": "{project.pk}", "model": "local/sketch", "inputs": {inputs}}}'
    response = post_raw(owner_api, "/api/v1/generations", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_deep"
    assert "inputs" in error["fields"]
    assert not Generation.objects.exists()
    assert credits_summary(user=owner).held == 0


def test_inputs_nested_five_hundred_levels_given_to_the_service_are_refused_without_recursing(
        owner: Any, catalog: None) -> None:
    value: Any = "deep"
    for _ in range(500):
        value = [value]
    with pytest.raises(InvalidRequest) as refused:
        generation_estimate(user=owner, model_id="local/sketch", inputs={"prompt": "a fox", "extra": value})
    assert refused.value.code == "too_deep"


def test_a_json_body_over_the_size_limit_is_a_413_in_the_json_error_shape(
        owner_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = post_raw(owner_api, "/api/v1/projects", '{"name": "x", "description": "' + "a" * 20_000 + '"}')
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert not Project.objects.exists()


def test_a_form_body_over_the_size_limit_is_a_413_in_the_json_error_shape(
        owner_api: APIClient, project: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "notes": "a" * 20_000},
                              format="multipart")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_a_huge_prompt_is_refused_without_being_echoed_back(
        owner_api: APIClient, owner: Any, project: Any, catalog: None) -> None:
    prompt = "p" * 4_000_000
    response = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                      "inputs": {"prompt": prompt}}, format="json")
    assert response.status_code == 400
    assert len(response.content) < 2_000
    assert response.json()["error"]["fields"]["inputs.prompt"] == ["At most 2000 characters."]
    assert not Generation.objects.exists()


def test_an_echoing_validation_message_is_cut_short(owner_api: APIClient) -> None:
    # A choice error quotes the value it refused ("\"…\" is not a valid choice.").
    response = owner_api.post("/api/v1/shares", {"target": "t" * 100_000}, format="json")
    assert response.status_code == 400
    assert len(response.content) < 2_000
    assert "t" * 100 in response.content.decode()
