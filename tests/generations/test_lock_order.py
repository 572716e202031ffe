"""Lock order on PostgreSQL: every path that changes a running job's money locks the job's row first,
then the wallet, then budgets (settle, release and budget_set do), so two of them never deadlock."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from billing.models import LedgerAccount
from generations.models import AIModel, Generation, PriceCard, Status
from generations.providers.base import ProviderError, ProviderJob, ProviderStatus
from generations.runner import generation_run
from generations.services import generation_create
from tests.conftest import wait_for
from tests.generations.test_pipeline import ScriptedProvider

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["prompt"],
          "properties": {"prompt": {"type": "string", "minLength": 1}}}


def _model(model_id: str, provider: str, usd: str) -> None:
    model = AIModel.objects.create(id=model_id, provider=provider, provider_model=model_id, name=model_id,
                                   operation="text-to-image", output_kind="image", input_schema=SCHEMA)
    PriceCard.objects.create(model=model, version=1, unit="image", usd_per_unit=Decimal(usd),
                             effective_from="2026-11-21", source="test")


class FailsWhileTheRowIsHeld(ScriptedProvider):
    """Fails transiently, but only once another connection holds the job's row, as budget_set or a
    settle would while the runner moves the job to its fallback."""

    def __init__(self, row_held: threading.Event) -> None:
        super().__init__([ProviderError("upstream overloaded", code="overloaded", retryable=True)])
        self.name = "alpha"
        self.row_held = row_held
        self.polled = threading.Event()

    def poll(self, job: ProviderJob) -> ProviderStatus:
        self.polled.set()
        assert self.row_held.wait(30)
        return super().poll(job)


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0] > 0


def test_moving_a_job_to_its_fallback_locks_the_job_before_the_wallet(
        owner: Any, project: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.GENERATION_MAX_ATTEMPTS = 1
    settings.GENERATION_POLL_INTERVAL = 0.01
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "alpha": "key-a", "beta": "key-b"}
    _model("alpha/img", "alpha", "0.05")
    _model("beta/img", "beta", "0.03")
    row_held, release = threading.Event(), threading.Event()
    alpha = FailsWhileTheRowIsHeld(row_held)
    monkeypatch.setattr("generations.runner.get_provider", lambda name: alpha)
    generation = generation_create(user=owner, project_id=project.pk, model_id="alpha/img",
                                   inputs={"prompt": "a kite"}, fallback_models=["beta/img"])

    def hold_the_row() -> None:
        assert alpha.polled.wait(30)
        with transaction.atomic():
            Generation.objects.select_for_update().get(pk=generation.pk)
            row_held.set()
            release.wait(30)
        connection.close()

    def run() -> None:
        generation_run(generation.pk)
        connection.close()

    holder, runner = threading.Thread(target=hold_the_row), threading.Thread(target=run)
    holder.start()
    runner.start()
    try:
        wait_for(_waiting_on_a_lock, timeout=30, message="the runner never waited for the job's row")
        # The runner waits for the job's row without holding the wallet: another job of the same user
        # (or a budget change) can take the wallet now.
        with transaction.atomic():
            try:
                LedgerAccount.objects.select_for_update(nowait=True).get(user=owner)
            except OperationalError:
                pytest.fail("the runner locked the wallet before the job's row")
    finally:
        release.set()
        holder.join(30)
        runner.join(30)
    generation.refresh_from_db()
    assert (generation.status, generation.model_id, generation.credits_held) == (Status.QUEUED, "beta/img", 3)
