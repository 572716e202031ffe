"""Concurrent submits against one wallet, on PostgreSQL with real threads and connections."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from billing.models import Hold, HoldStatus
from billing.selectors import unbalanced_transactions, wallet_drift
from billing.services import InsufficientCredits, credits_summary, hold_settle
from billing.signup import user_create
from generations.models import Generation
from generations.services import generation_create
from projects.services import project_create

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# PostgreSQL's default max_connections is 100: the threads are released together by a barrier, but at
# most this many hold a connection at once (the rest queue for the wallet's row lock either way).
CONNECTIONS = 40


def _race(n: int, attempt: Callable[[], Any]) -> tuple[int, int]:
    barrier = threading.Barrier(n)
    gate = threading.BoundedSemaphore(CONNECTIONS)
    results: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        with gate:
            try:
                attempt()
                outcome = "accepted"
            except InsufficientCredits:
                outcome = "refused"
            except Exception as exc:  # reported in the assertion below, not swallowed
                outcome = f"error: {exc!r}"
            finally:
                connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == n, "a thread did not finish"
    assert not [r for r in results if r.startswith("error")], results
    return results.count("accepted"), results.count("refused")


def _submit(user: Any, project: Any) -> Callable[[], Any]:
    return lambda: generation_create(user=user, project_id=project.pk, model_id="local/sketch",
                                     inputs={"prompt": "x"})


def _assert_ledger_consistent() -> None:
    assert unbalanced_transactions() == []
    assert wallet_drift() == []


def test_a_double_submit_against_a_balance_that_covers_one_accepts_exactly_one(catalog: None) -> None:
    user = user_create(email="racer@example.com", password="x" * 12, starter_credits=1)
    project = project_create(owner=user, name="Race")
    assert _race(2, _submit(user, project)) == (1, 1)
    assert Generation.objects.filter(user=user).count() == 1
    assert credits_summary(user=user).as_dict() == {"balance": 1, "held": 1, "available": 0}


def test_a_hundred_concurrent_submits_against_a_wallet_covering_fifty_accept_exactly_fifty(catalog: None) -> None:
    user = user_create(email="crowd@example.com", password="x" * 12, starter_credits=50)  # a sketch is 1 credit
    project = project_create(owner=user, name="Crowd")

    assert _race(100, _submit(user, project)) == (50, 50)

    # Every accepted job has exactly its own open hold, and nothing else is held: no orphans either way.
    generations = list(Generation.objects.filter(user=user))
    holds = Hold.objects.filter(account__user=user)
    assert len(generations) == 50
    assert sorted(g.hold_reference for g in generations) == sorted(holds.values_list("reference", flat=True))
    assert holds.filter(status=HoldStatus.OPEN).count() == 50
    assert credits_summary(user=user).as_dict() == {"balance": 50, "held": 50, "available": 0}
    _assert_ledger_consistent()

    # The fifty settle concurrently too (workers finishing together): the wallet lands on exactly zero.
    references = iter([g.hold_reference for g in generations])
    next_reference = threading.Lock()

    def settle() -> None:
        with next_reference:
            reference = next(references)
        hold_settle(reference=reference, amount=1)

    assert _race(50, settle) == (50, 0)
    assert credits_summary(user=user).as_dict() == {"balance": 0, "held": 0, "available": 0}
    assert not holds.filter(status=HoldStatus.OPEN).exists()
    _assert_ledger_consistent()
