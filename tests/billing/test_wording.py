"""Credit amounts in billing's messages read as English: one credit, many credits."""

from __future__ import annotations

from typing import Any

import pytest

from billing.budgets.services import BudgetExceeded, period_start
from billing.models import BudgetUsage
from billing.services import InsufficientCredits, credits_hold
from generations.services import generation_create
from orchestration.budgets import budget_set


def test_a_wallet_one_credit_short_says_it_needs_one_credit(owner: Any) -> None:
    with pytest.raises(InsufficientCredits) as refused:
        credits_hold(user=owner, amount=501, reference="wording-test")
    assert str(refused.value).startswith("This needs 501 credits;")
    assert str(InsufficientCredits(balance=0, held=0, required=1)).startswith("This needs 1 credit;")


def test_a_budget_of_one_credit_is_written_in_the_singular(owner: Any, project: Any, catalog: None) -> None:
    budget = budget_set(project=project, limit_credits=1)
    BudgetUsage.objects.create(budget=budget, period_start=period_start("monthly"), spent=1, held=0)
    with pytest.raises(BudgetExceeded) as refused:
        generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "a fox"})
    assert "1 of 1 credit used" in refused.value.message
