"""What billing does when a generation moves: called by generations.services and the worker
(generations.attempts) inside the same transactions as the ledger hold, settle and release."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Protocol

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing.budgets.services import BudgetExceeded, budget_hold, budget_release, budget_resize, budget_settle
from billing.models import UsageDaily

# Budgets move with the hold: budget_hold in the submit's transaction (may raise BudgetExceeded),
# budget_settle next to hold_settle, budget_release next to hold_release, budget_resize next to
# hold_resize. See billing/budgets/services.py.
__all__ = ["BudgetExceeded", "budget_hold", "budget_release", "budget_resize", "budget_settle", "usage_cost_record",
           "usage_record"]


class UsageSubject(Protocol):
    """What the usage rollup reads from a job: generations.models.Generation has it. Billing sits below
    generations in the layers, so it names the fields it needs rather than importing the model."""

    @property
    def user_id(self) -> int: ...

    @property
    def project_id(self) -> uuid.UUID: ...

    @property
    def model_id(self) -> str: ...

    @property
    def provider(self) -> str: ...


def usage_record(*, generation: UsageSubject, succeeded: bool, credits: int, provider_cost_usd: Decimal | None) -> None:
    """Count a finished generation (succeeded or failed; canceled ones are not usage) in its day's
    rollup row."""
    _rollup_add(generation, generations=1, succeeded=int(succeeded), failed=int(not succeeded), credits=credits,
                provider_cost_usd=provider_cost_usd or Decimal(0))


def usage_cost_record(*, generation: UsageSubject, provider_cost_usd: Decimal) -> None:
    """Add what a provider billed for work that is not counted as a finished generation: a canceled
    job (Replicate bills the time a canceled prediction ran) or a failed attempt that is retried. The
    day's provider spend, and so the admin's margin report, stays true; the job counts are untouched."""
    if provider_cost_usd:
        _rollup_add(generation, provider_cost_usd=provider_cost_usd)


def _rollup_add(generation: UsageSubject, **amounts: int | Decimal) -> None:
    """Add `amounts` to the generation's row for today: an atomic increment, so concurrent workers
    never lose a count."""
    key = {"day": timezone.localdate(), "user_id": generation.user_id, "project_id": generation.project_id,
           "model": generation.model_id}
    changes = {field: F(field) + amount for field, amount in amounts.items()}
    if UsageDaily.objects.filter(**key).update(**changes):
        return
    try:
        with transaction.atomic():
            UsageDaily.objects.create(**key, provider=generation.provider, **amounts)
    except IntegrityError:  # another worker created today's row first
        UsageDaily.objects.filter(**key).update(**changes)
