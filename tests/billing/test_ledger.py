from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from billing.models import Entry, Hold, HoldStatus, LedgerAccount, Transaction
from billing.selectors import unbalanced_transactions, wallet_drift
from billing.services import (
    InsufficientCredits,
    credits_grant,
    credits_hold,
    credits_summary,
    hold_release,
    hold_settle,
)

pytestmark = pytest.mark.django_db


def test_starter_credits_are_a_balanced_posting(owner: Any) -> None:
    assert credits_summary(user=owner).balance == 500
    assert unbalanced_transactions() == []
    assert Entry.objects.filter(account__user=owner).get().amount == 500


def test_a_grant_with_the_same_idempotency_key_posts_once(owner: Any) -> None:
    for _ in range(3):
        credits_grant(user=owner, amount=100, reason="promo", idempotency_key="promo:spring")
    assert credits_summary(user=owner).balance == 600
    assert Transaction.objects.filter(idempotency_key="promo:spring").count() == 1


def test_a_hold_reserves_credits_and_refuses_more_than_available(owner: Any) -> None:
    credits_hold(user=owner, amount=400, reference="job:1")
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 400, "available": 100}
    with pytest.raises(InsufficientCredits) as info:
        credits_hold(user=owner, amount=101, reference="job:2")
    assert (info.value.available, info.value.required) == (100, 101)
    assert not Hold.objects.filter(reference="job:2").exists()


def test_settle_charges_at_most_the_hold_and_frees_the_rest(owner: Any) -> None:
    credits_hold(user=owner, amount=10, reference="job:1")
    assert hold_settle(reference="job:1", amount=25) == 10
    assert credits_summary(user=owner).as_dict() == {"balance": 490, "held": 0, "available": 490}
    credits_hold(user=owner, amount=10, reference="job:2")
    assert hold_settle(reference="job:2", amount=4) == 4
    assert credits_summary(user=owner).as_dict() == {"balance": 486, "held": 0, "available": 486}


def test_settling_or_releasing_twice_changes_nothing_the_second_time(owner: Any) -> None:
    credits_hold(user=owner, amount=10, reference="job:1")
    assert hold_settle(reference="job:1", amount=7) == 7
    assert hold_settle(reference="job:1", amount=7) == 7
    assert hold_release(reference="job:1") is False
    assert credits_summary(user=owner).balance == 493
    credits_hold(user=owner, amount=10, reference="job:2")
    assert hold_release(reference="job:2") is True
    assert hold_release(reference="job:2") is False
    assert hold_settle(reference="job:2", amount=10) == 0
    assert credits_summary(user=owner).as_dict() == {"balance": 493, "held": 0, "available": 493}
    assert Hold.objects.get(reference="job:2").status == HoldStatus.RELEASED


def test_every_posting_balances_and_wallets_match_their_entries(owner: Any, outsider: Any) -> None:
    for i in range(5):
        credits_hold(user=owner, amount=3, reference=f"a:{i}")
        credits_hold(user=outsider, amount=5, reference=f"b:{i}")
    for i in range(5):
        hold_settle(reference=f"a:{i}", amount=i)
        if i % 2:
            hold_release(reference=f"b:{i}")
    assert unbalanced_transactions() == []
    assert wallet_drift() == []
    revenue = LedgerAccount.objects.get(code="revenue")
    assert sum(revenue.entries.values_list("amount", flat=True)) == sum(min(i, 3) for i in range(5))  # capped at the hold
    call_command("ledger_verify")


def test_ledger_verify_reports_a_drifted_wallet(owner: Any) -> None:
    from django.core.management.base import CommandError

    LedgerAccount.objects.filter(user=owner).update(balance=999)
    with pytest.raises(CommandError, match="1 wallets drifted"):
        call_command("ledger_verify")
