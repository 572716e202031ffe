"""Projects over the API: create, list, change, delete, and the caps on what a project holds."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from projects.models import DESCRIPTION_MAX, Project

pytestmark = pytest.mark.django_db


def test_projects_crud(owner_api: APIClient) -> None:
    created = owner_api.post("/api/v1/projects", {"name": "Teaser", "tags": ["a", "a", "b"]}, format="json")
    assert created.status_code == 201, created.json()
    pid = created.json()["id"]
    assert created.json()["tags"] == ["a", "b"]
    assert owner_api.post("/api/v1/projects", {"name": "Teaser"}, format="json").status_code == 409
    patched = owner_api.patch(f"/api/v1/projects/{pid}", {"description": "30s cut", "archived": True}, format="json")
    assert patched.json()["description"] == "30s cut" and patched.json()["archived"] is True
    assert [p["name"] for p in owner_api.get("/api/v1/projects").json()["results"]] == ["Teaser"]
    assert owner_api.delete(f"/api/v1/projects/{pid}").status_code == 204
    assert owner_api.get(f"/api/v1/projects/{pid}").status_code == 404


def test_a_project_description_over_its_cap_is_a_400_and_nothing_is_stored(owner_api: APIClient) -> None:
    response = owner_api.post("/api/v1/projects", {"name": "Big", "description": "d" * 4_000_000}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["description"] == [f"At most {DESCRIPTION_MAX} characters."]
    assert len(response.content) < 2_000
    assert not Project.objects.exists()


def test_a_project_description_cannot_grow_past_its_cap_by_a_change(owner_api: APIClient, project: Any) -> None:
    response = owner_api.patch(f"/api/v1/projects/{project.pk}", {"description": "d" * (DESCRIPTION_MAX + 1)},
                               format="json")
    assert response.status_code == 400
    project.refresh_from_db()
    assert project.description == ""
    assert owner_api.patch(f"/api/v1/projects/{project.pk}", {"description": "d" * DESCRIPTION_MAX},
                           format="json").status_code == 200


def test_the_database_refuses_an_overlong_description_from_any_writer(project: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.filter(pk=project.pk).update(description="d" * (DESCRIPTION_MAX + 1))
