from __future__ import annotations

from typing import Any

import pytest

from billing.models import UsageDaily
from generations import attempts, services
from generations.models import Generation
from generations.runner import generation_run
from generations.services import generation_create

pytestmark = pytest.mark.django_db


def test_finished_generations_are_counted_in_the_daily_rollup(owner: Any, project: Any, catalog: None,
                                                               settings: Any) -> None:
    settings.GENERATION_POLL_INTERVAL = 0.01
    for prompt in ("one", "two"):
        generation = generation_create(user=owner, project_id=project.pk, model_id="local/sketch",
                                       inputs={"prompt": prompt, "width": 256, "height": 256, "steps": 1})
        generation_run(generation.pk)
    failing = generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "x"})
    Generation.objects.filter(pk=failing.pk).update(status="running")
    attempts.generation_fail(generation_id=failing.pk, code="internal_error", message="boom")
    canceled = generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "y"})
    services.generation_cancel(user=owner, generation_id=canceled.pk)
    row = UsageDaily.objects.get(user=owner, project=project, model="local/sketch")
    assert (row.generations, row.succeeded, row.failed, row.credits, row.provider) == (3, 2, 1, 2, "local")


def test_a_provider_cost_without_a_counted_job_adds_to_the_days_spend_only(owner: Any, project: Any,
                                                                           catalog: None) -> None:
    from decimal import Decimal

    from billing.hooks import usage_cost_record, usage_record

    canceled = generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "y"})
    usage_cost_record(generation=canceled, provider_cost_usd=Decimal("0"))
    assert not UsageDaily.objects.exists()  # nothing billed, no row
    usage_cost_record(generation=canceled, provider_cost_usd=Decimal("0.0125"))  # makes the row
    usage_record(generation=canceled, succeeded=True, credits=3, provider_cost_usd=Decimal("0.01"))
    usage_cost_record(generation=canceled, provider_cost_usd=Decimal("0.002"))  # adds to it
    row = UsageDaily.objects.get(user=owner, project=project, model="local/sketch")
    assert (row.generations, row.succeeded, row.failed, row.credits) == (1, 1, 0, 3)
    assert (row.provider_cost_usd, row.provider) == (Decimal("0.0245"), "local")
