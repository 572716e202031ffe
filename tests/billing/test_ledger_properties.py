"""The ledger under random operations (Hypothesis stateful testing).

A machine drives random submits (holds), settles (charging less than, exactly or more than the hold),
releases, top-ups (grants), admin corrections, refund clawbacks (forced negative adjustments) and replays
of earlier idempotency keys and references against two wallets, keeps its own model of what each wallet
should hold, and after every step checks that:

- every posting balances, and every wallet's cached balance and held amount match its entries and open holds;
- each wallet's balance and holds equal the model's, and available = balance − held;
- no wallet is below zero (balance or available) unless a refund clawback took it there.

Each example runs inside a savepoint that is rolled back afterwards, so examples start from an empty ledger.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from accounts.models import User
from billing.adjustments import credits_adjust
from billing.models import Hold, HoldStatus
from billing.selectors import unbalanced_transactions, wallet_drift
from billing.services import (
    InsufficientCredits,
    credits_grant,
    credits_hold,
    credits_summary,
    hold_release,
    hold_settle,
)
from core.errors import Conflict

pytestmark = pytest.mark.django_db

WALLETS = 2
_examples = itertools.count()


@dataclass
class WalletModel:
    balance: int = 0
    holds: dict[str, int] = field(default_factory=dict)  # open holds: reference -> amount
    clawed_back: bool = False  # a refund clawback has taken this wallet below zero at some point

    @property
    def held(self) -> int:
        return sum(self.holds.values())


@dataclass(frozen=True)
class Done:
    """An operation that succeeded, to replay with the same key or reference."""

    kind: str  # grant, adjust, hold, settle, release
    wallet: int
    key: str
    amount: int = 0


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.savepoint = transaction.savepoint()
        n = next(_examples)
        self.admin = User.objects.create_user(email=f"admin-{n}@example.com", password=None, is_staff=True)
        self.users = [User.objects.create_user(email=f"user-{n}-{i}@example.com", password=None)
                      for i in range(WALLETS)]
        self.model = [WalletModel() for _ in range(WALLETS)]
        self.done: list[Done] = []
        self.ids = itertools.count()

    def teardown(self) -> None:
        transaction.savepoint_rollback(self.savepoint)

    def _key(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids)}"

    def _open_holds(self) -> list[tuple[int, str]]:
        return [(i, ref) for i, wallet in enumerate(self.model) for ref in sorted(wallet.holds)]

    # --- operations ------------------------------------------------------------------------------------------

    @rule(wallet=st.integers(0, WALLETS - 1), amount=st.integers(1, 200))
    def top_up(self, wallet: int, amount: int) -> None:
        key = self._key("grant")
        credits_grant(user=self.users[wallet], amount=amount, reason="top-up", idempotency_key=key)
        self.model[wallet].balance += amount
        self.done.append(Done("grant", wallet, key, amount))

    @rule(wallet=st.integers(0, WALLETS - 1), amount=st.integers(0, 150))
    def submit(self, wallet: int, amount: int) -> None:
        model = self.model[wallet]
        ref = self._key("generation")
        try:
            credits_hold(user=self.users[wallet], amount=amount, reference=ref)
        except InsufficientCredits:
            assert model.balance - model.held < amount, "refused a hold the wallet could cover"
            return
        assert model.balance - model.held >= amount, "accepted a hold the wallet could not cover"
        model.holds[ref] = amount
        self.done.append(Done("hold", wallet, ref, amount))

    @precondition(lambda self: any(wallet.holds for wallet in self.model))
    @rule(data=st.data(), charge=st.integers(0, 200))
    def settle(self, data: st.DataObject, charge: int) -> None:
        wallet, ref = data.draw(st.sampled_from(self._open_holds()))
        model = self.model[wallet]
        charged = hold_settle(reference=ref, amount=charge)
        assert charged == min(charge, model.holds[ref]), "a settle charged more than its hold"
        model.balance -= charged
        del model.holds[ref]
        self.done.append(Done("settle", wallet, ref, charged))

    @precondition(lambda self: any(wallet.holds for wallet in self.model))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        wallet, ref = data.draw(st.sampled_from(self._open_holds()))
        assert hold_release(reference=ref) is True
        del self.model[wallet].holds[ref]
        self.done.append(Done("release", wallet, ref))

    @rule(wallet=st.integers(0, WALLETS - 1), amount=st.integers(1, 300))
    def refund_clawback(self, wallet: int, amount: int) -> None:
        key = self._key("clawback")
        credits_adjust(user=self.users[wallet], amount=-amount, reason="Stripe refund", admin=self.admin,
                       idempotency_key=key, force=True)
        model = self.model[wallet]
        model.balance -= amount
        if model.balance - model.held < 0:
            model.clawed_back = True
        self.done.append(Done("adjust", wallet, key, -amount))

    @rule(wallet=st.integers(0, WALLETS - 1), amount=st.integers(-300, 300).filter(bool))
    def correction(self, wallet: int, amount: int) -> None:
        model = self.model[wallet]
        key = self._key("correction")
        try:
            credits_adjust(user=self.users[wallet], amount=amount, reason="support", admin=self.admin,
                           idempotency_key=key)
        except Conflict:
            assert amount < 0 and model.balance - model.held + amount < 0, "refused a correction that fits"
            return
        assert amount > 0 or model.balance - model.held + amount >= 0, "an unforced correction overdrew the wallet"
        model.balance += amount
        self.done.append(Done("adjust", wallet, key, amount))

    @precondition(lambda self: bool(self.done))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """Any earlier operation again, with its key or reference: nothing changes (the invariants
        compare every wallet with the model, which a replay leaves as it is)."""
        op = data.draw(st.sampled_from(self.done))
        user = self.users[op.wallet]
        if op.kind == "grant":
            credits_grant(user=user, amount=op.amount, reason="top-up", idempotency_key=op.key)
        elif op.kind == "adjust":
            credits_adjust(user=user, amount=op.amount, reason="replay", admin=self.admin, idempotency_key=op.key,
                           force=True)
        elif op.kind == "hold":
            hold = credits_hold(user=user, amount=op.amount, reference=op.key)
            assert hold.amount == op.amount
        elif op.kind == "settle":
            assert hold_settle(reference=op.key, amount=op.amount + 50) == op.amount
        else:
            assert hold_release(reference=op.key) is False

    # --- invariants ------------------------------------------------------------------------------------------

    @invariant()
    def every_posting_balances(self) -> None:
        assert unbalanced_transactions() == []

    @invariant()
    def cached_balances_match_the_entries(self) -> None:
        assert wallet_drift() == []

    @invariant()
    def wallets_match_the_model(self) -> None:
        for user, model in zip(self.users, self.model, strict=True):
            summary = credits_summary(user=user)
            assert (summary.balance, summary.held) == (model.balance, model.held)
            assert summary.available == summary.balance - summary.held
            if not model.clawed_back:
                assert summary.balance >= 0 and summary.available >= 0, "below zero without a clawback"
        open_holds = {ref for model in self.model for ref in model.holds}
        assert set(Hold.objects.filter(account__user__in=self.users, status=HoldStatus.OPEN)
                   .values_list("reference", flat=True)) == open_holds


def test_the_ledger_keeps_its_invariants_under_random_operations() -> None:
    run_state_machine_as_test(LedgerMachine, settings=settings(
        max_examples=30, stateful_step_count=25, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))
