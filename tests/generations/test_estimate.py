"""The estimate shown before a submit: what it returns about the seed, and how credits are written."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from generations.models import Generation
from generations.pricing import credits_display

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


@pytest.mark.parametrize(("count", "text"), [(0, "0 credits"), (1, "1 credit"), (2, "2 credits"),
                                             (1500, "1,500 credits")])
def test_credit_counts_are_written_in_the_singular_only_for_one(count: int, text: str) -> None:
    assert credits_display(count) == text
