"""The API docs: every operation sits under a known area tag and has a summary (config/schema.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator

from config.schema import area_for_path


@pytest.fixture(scope="module")
def operations() -> list[tuple[str, str, dict[str, Any]]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]


def test_every_operation_is_tagged_with_a_documented_area(operations: list[tuple[str, str, dict[str, Any]]]) -> None:
    known = {tag["name"] for tag in settings.SPECTACULAR_SETTINGS["TAGS"]}
    untagged = [f"{method.upper()} {path}: {op.get('tags')}" for path, method, op in operations
                if len(op.get("tags", [])) != 1 or op["tags"][0] not in known]
    assert untagged == []


def test_every_operation_has_a_summary(operations: list[tuple[str, str, dict[str, Any]]]) -> None:
    missing = [f"{method.upper()} {path}" for path, method, op in operations if not str(op.get("summary", "")).strip()]
    assert missing == []


def test_every_documented_tag_is_used(operations: list[tuple[str, str, dict[str, Any]]]) -> None:
    used = {op["tags"][0] for _, _, op in operations}
    assert {tag["name"] for tag in settings.SPECTACULAR_SETTINGS["TAGS"]} == used


def test_standard_actions_get_a_summary_from_the_resource_name(operations: list[tuple[str, str, dict[str, Any]]]) -> None:
    by_key = {(method, path): op for path, method, op in operations}
    assert by_key[("get", "/api/v1/projects/{id}")]["summary"] == "Get a project"
    assert by_key[("delete", "/api/v1/provider-keys/{provider}")]["summary"] == "Delete a provider key"
    assert by_key[("get", "/api/v1/assets/{id}")]["summary"] == "Get an asset"


def test_sub_resources_are_tagged_by_their_own_area() -> None:
    assert area_for_path("/api/v1/projects/{project_id}/budget") == "budgets"
    assert area_for_path("/api/v1/projects/{project_id}/export") == "exports"
    assert area_for_path("/api/v1/me") == "account"
    assert area_for_path("/api/v1/assets/{id}/lineage") == "assets"
