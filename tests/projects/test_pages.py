"""The project pages of the studio: the dashboard that lists a user's projects, creating one from its
form, and the project's edit and delete forms (studio.views.dashboard, studio.views.projects)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from projects.models import Project
from projects.services import project_create
from tests.studio.support import image_asset

pytestmark = pytest.mark.django_db




def project_url(project: Project) -> str:
    return reverse("studio:project", kwargs={"project_id": project.pk})


def test_the_dashboard_lists_only_my_projects(signed_in: Any, project: Project, outsider: Any) -> None:
    project_create(owner=outsider, name="Their secret film")
    response = signed_in.get(reverse("studio:dashboard"))
    assert response.status_code == 200
    assert "Trailer" in response.text
    assert "Their secret film" not in response.text
    assert 'id="credits"' in response.text and "500" in response.text  # the balance in the header


def test_creating_a_project_via_the_form_creates_the_row_and_a_duplicate_name_shows_the_error(
        signed_in: Any, owner: Any) -> None:
    response = signed_in.post(reverse("studio:dashboard"), {"name": "Music video", "description": "Neon"})
    created = Project.objects.get(owner=owner, name="Music video")
    assert response.status_code == 302 and response["Location"] == project_url(created)
    assert created.description == "Neon"

    response = signed_in.post(reverse("studio:dashboard"), {"name": "Music video", "description": ""})
    assert response.status_code == 400
    assert "You already have a project named" in response.text
    assert Project.objects.filter(owner=owner).count() == 1


def test_the_dashboard_counts_do_not_query_per_project(signed_in: Any, owner: Any,
                                                        django_assert_max_num_queries: Any) -> None:
    for i in range(6):
        image_asset(project_create(owner=owner, name=f"Project {i}"))
    with django_assert_max_num_queries(5):
        response = signed_in.get(reverse("studio:dashboard"))
    assert response.text.count('class="card project-card') == 6
    assert "1 asset ·" in response.text


def test_editing_the_project_renames_it_and_a_taken_name_shows_the_error(
        signed_in: Any, owner: Any, project: Project) -> None:
    project_create(owner=owner, name="Teaser")
    url = reverse("studio:project-edit", kwargs={"project_id": project.pk})
    response = signed_in.post(url, {"name": "Teaser", "description": ""})
    assert response.status_code == 400 and "You already have a project named" in response.text
    project.refresh_from_db()
    assert project.name == "Trailer"
    response = signed_in.post(url, {"name": "Final cut", "description": "v2", "archived": "on"})
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.description, project.archived) == ("Final cut", "v2", True)


def test_deleting_a_project_needs_the_confirmation_box(signed_in: Any, project: Project) -> None:
    url = reverse("studio:project-delete", kwargs={"project_id": project.pk})
    assert signed_in.post(url).status_code == 302 and Project.objects.filter(pk=project.pk).exists()
    response = signed_in.post(url, {"confirm": "yes"})
    assert response.status_code == 302 and response["Location"] == reverse("studio:dashboard")
    assert not Project.objects.filter(pk=project.pk).exists()
