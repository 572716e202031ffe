"""The estimate shown before a submit: what it returns about the seed, and how credits are written."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from billing.services import credits_summary
from generations.models import Generation
from generations.pricing import credits_display
from generations.runner import generation_run
from generations.services import generation_create
from projects.services import project_create
from tests.conftest import _user

pytestmark = pytest.mark.django_db


def estimate(api: APIClient, inputs: dict[str, Any]) -> Any:
    return api.post("/api/v1/generations/estimate", {"model": "local/sketch", "inputs": inputs}, format="json")


def submit(api: APIClient, project: Any, inputs: dict[str, Any]) -> Any:
    return api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch", "inputs": inputs},
                    format="json")


def test_the_estimate_returns_no_seed_and_the_submit_records_the_seed_it_drew(owner_api: APIClient, project: Any,
                                                                              catalog: None) -> None:
    response = estimate(owner_api, {"prompt": "a red fox"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert "seed" not in body["inputs"]
    assert body["inputs"]["height"] == 768 and body["credits"] == 1  # other defaults are filled in
    submitted = submit(owner_api, project, body["inputs"])
    assert submitted.status_code == 202, submitted.json()
    seed = submitted.json()["inputs"]["seed"]
    assert isinstance(seed, int) and 0 <= seed <= 2**31 - 1
    assert Generation.objects.get(pk=submitted.json()["id"]).inputs["seed"] == seed


def test_a_seed_given_to_the_estimate_is_the_seed_the_submit_runs_with(owner_api: APIClient, project: Any,
                                                                       catalog: None) -> None:
    body = estimate(owner_api, {"prompt": "a red fox", "seed": 42}).json()
    assert body["inputs"]["seed"] == 42
    submitted = submit(owner_api, project, body["inputs"]).json()
    assert Generation.objects.get(pk=submitted["id"]).inputs["seed"] == 42


def test_the_estimate_still_refuses_a_seed_out_of_range(owner_api: APIClient, catalog: None) -> None:
    response = estimate(owner_api, {"prompt": "a red fox", "seed": -1})
    assert response.status_code == 400
    assert "inputs.seed" in response.json()["error"]["fields"]


# --- "1 credit", never "1 credits" -------------------------------------------------------------------------

@pytest.mark.parametrize(("count", "text"), [(0, "0 credits"), (1, "1 credit"), (2, "2 credits"),
                                             (1500, "1,500 credits")])
def test_credit_counts_are_written_in_the_singular_only_for_one(count: int, text: str) -> None:
    assert credits_display(count) == text


def test_a_project_that_spent_one_credit_and_a_wallet_with_one_left_say_credit(client: Client,
                                                                               catalog: None) -> None:
    user = _user("two-credits@example.com", 2)
    project = project_create(owner=user, name="Tiny")
    sketch = generation_create(user=user, project_id=project.pk, model_id="local/sketch",
                               inputs={"prompt": "a fox", "width": 256, "height": 256, "steps": 1})
    generation_run(sketch.pk)
    assert credits_summary(user=user).available == 1
    client.force_login(user)
    html = client.get(reverse("studio:project", kwargs={"project_id": project.pk})).content.decode()
    assert "Spent so far: <strong>1 credit</strong>" in html
    assert '<strong>1</strong> credit</span>' in html  # the wallet badge
    assert "1 credits" not in html


def test_a_budget_of_one_credit_is_set_and_shown_in_the_singular(client: Client, owner: Any, project: Any) -> None:
    client.force_login(owner)
    response = client.post(reverse("studio:project-budget", kwargs={"project_id": project.pk}),
                           {"limit": "1", "period": "monthly"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "Budget set: 1 credit a month." in html
    assert "of 1 credit used" in html and "1 credit left." in html
