"""Concurrent submits against one wallet, on PostgreSQL with real threads and connections."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from accounts.services import user_create
from billing.models import Hold
from billing.services import InsufficientCredits, credits_summary
from generations.models import Generation
from generations.services import generation_create
from projects.services import project_create

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(user: Any, project: Any, n: int) -> tuple[int, int]:
    barrier = threading.Barrier(n)
    results: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        try:
            barrier.wait()
            generation_create(user=user, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "x"})
            outcome = "accepted"
        except InsufficientCredits:
            outcome = "refused"
        finally:
            connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=submit) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results.count("accepted"), results.count("refused")


def test_a_double_submit_against_a_balance_that_covers_one_accepts_exactly_one(catalog: None) -> None:
    user = user_create(email="racer@example.com", password="x" * 12, starter_credits=1)
    project = project_create(owner=user, name="Race")
    assert _race(user, project, 2) == (1, 1)
    assert Generation.objects.filter(user=user).count() == 1
    assert credits_summary(user=user).as_dict() == {"balance": 1, "held": 1, "available": 0}


def test_twenty_concurrent_submits_against_ten_credits_accept_exactly_ten(catalog: None) -> None:
    user = user_create(email="crowd@example.com", password="x" * 12, starter_credits=10)
    project = project_create(owner=user, name="Crowd")
    assert _race(user, project, 20) == (10, 10)
    assert Hold.objects.filter(account__user=user, status="open").count() == 10
    assert credits_summary(user=user).available == 0
