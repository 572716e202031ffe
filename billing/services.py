"""Ledger writes. Every function here is the only way its kind of money movement happens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from billing.models import AccountKind, Entry, Hold, HoldStatus, LedgerAccount, Transaction
from billing.wording import credits_display
from core.errors import ServiceError

if TYPE_CHECKING:
    from accounts.models import User


class InsufficientCredits(ServiceError):
    """HTTP 402 with the wallet's figures in the body (`balance`, `held`, `available`, `estimate`)."""

    code = "insufficient_credits"
    http_status = status.HTTP_402_PAYMENT_REQUIRED

    def __init__(self, *, balance: int, held: int, required: int) -> None:
        self.balance = balance
        self.held = held
        self.available = balance - held
        self.required = required
        super().__init__(f"This needs {credits_display(required)}; you have {self.available} available "
                         f"({balance} balance, {held} on hold for running jobs).",
                         extra={"balance": balance, "held": held, "available": self.available, "estimate": required})


@dataclass(frozen=True)
class CreditsSummary:
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held

    def as_dict(self) -> dict[str, int]:
        return {"balance": self.balance, "held": self.held, "available": self.available}


def system_account(code: str, kind: str) -> LedgerAccount:
    account, _ = LedgerAccount.objects.get_or_create(code=code, defaults={"kind": kind})
    return account


def _lock_wallet(user_id: int) -> LedgerAccount:
    """Lock the user's wallet row for the rest of the transaction. Every change to one wallet's
    balance or holds takes this lock first, so concurrent submits are serialised per user and never
    across users. (On SQLite the IMMEDIATE transaction mode serialises all writers instead.)"""
    wallet = LedgerAccount.objects.select_for_update().filter(user_id=user_id).first()
    if wallet is None:
        try:
            with transaction.atomic():
                LedgerAccount.objects.create(user_id=user_id, kind=AccountKind.WALLET)
        except IntegrityError:  # created concurrently
            pass
        wallet = LedgerAccount.objects.select_for_update().get(user_id=user_id)
    return wallet


def _post(*, idempotency_key: str, kind: str, legs: list[tuple[LedgerAccount, int]], memo: str = "",
          reference: str = "", created_by: User | None = None) -> tuple[Transaction, bool]:
    """Write one balanced posting, or return the one already written under this key."""
    if sum(amount for _, amount in legs) != 0:
        raise ValueError("A posting must balance.")
    existing = Transaction.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing, False
    with transaction.atomic():
        txn = Transaction.objects.create(idempotency_key=idempotency_key, kind=kind, memo=memo[:255],
                                         reference=reference, created_by=created_by)
        Entry.objects.bulk_create(
            [Entry(transaction=txn, account=account, amount=amount) for account, amount in legs if amount]
        )
    return txn, True


def credits_summary(*, user: User) -> CreditsSummary:
    wallet = LedgerAccount.objects.filter(user=user).only("balance", "held").first()
    if wallet is None:
        return CreditsSummary(balance=0, held=0)
    return CreditsSummary(balance=wallet.balance, held=wallet.held)


@transaction.atomic
def credits_grant(*, user: User, amount: int, reason: str, idempotency_key: str,
                  created_by: User | None = None) -> Transaction:
    if amount <= 0:
        raise ValueError("A grant must be positive.")
    wallet = _lock_wallet(user.pk)
    promo = system_account("promo", AccountKind.PROMO)
    txn, created = _post(idempotency_key=idempotency_key, kind="grant", memo=reason, created_by=created_by,
                         legs=[(promo, -amount), (wallet, amount)])
    if created:
        LedgerAccount.objects.filter(pk=wallet.pk).update(balance=wallet.balance + amount)
    return txn


@transaction.atomic
def credits_hold(*, user: User, amount: int, reference: str) -> Hold:
    """Reserve `amount` credits for the job named by `reference`, or raise InsufficientCredits.
    A second call with the same reference returns the first hold."""
    if amount < 0:
        raise ValueError("A hold cannot be negative.")
    wallet = _lock_wallet(user.pk)
    existing = Hold.objects.filter(reference=reference).first()
    if existing is not None:
        return existing
    if wallet.available < amount:
        raise InsufficientCredits(balance=wallet.balance, held=wallet.held, required=amount)
    hold = Hold.objects.create(account=wallet, amount=amount, reference=reference)
    LedgerAccount.objects.filter(pk=wallet.pk).update(held=wallet.held + amount)
    return hold


def _lock_open_hold(reference: str) -> tuple[LedgerAccount, Hold] | None:
    hold = Hold.objects.filter(reference=reference).select_related("account").first()
    if hold is None:
        return None
    # Holds are only ever on wallets, and every wallet belongs to a user (system accounts hold nothing).
    assert hold.account.user_id is not None
    wallet = _lock_wallet(hold.account.user_id)  # lock order: wallet, then hold
    hold = Hold.objects.select_for_update().get(pk=hold.pk)
    if hold.status != HoldStatus.OPEN:
        return None
    return wallet, hold


@transaction.atomic
def hold_settle(*, reference: str, amount: int, memo: str = "") -> int:
    """Charge up to the held amount and free the rest. Returns the credits charged; settling a hold
    that is already closed charges nothing more (a task that runs twice settles once)."""
    locked = _lock_open_hold(reference)
    if locked is None:
        hold = Hold.objects.filter(reference=reference).first()
        return hold.settled_amount if hold is not None else 0
    wallet, hold = locked
    charge = max(0, min(int(amount), hold.amount))
    txn = None
    if charge:
        revenue = system_account("revenue", AccountKind.REVENUE)
        txn, _ = _post(idempotency_key=f"settle:{reference}", kind="charge", memo=memo, reference=reference,
                       legs=[(wallet, -charge), (revenue, charge)])
    LedgerAccount.objects.filter(pk=wallet.pk).update(balance=wallet.balance - charge,
                                                      held=wallet.held - hold.amount)
    hold.status = HoldStatus.SETTLED
    hold.settled_amount = charge
    hold.transaction = txn
    hold.closed_at = timezone.now()
    hold.save(update_fields=["status", "settled_amount", "transaction", "closed_at"])
    return charge


@transaction.atomic
def hold_release(*, reference: str) -> bool:
    """Free a hold without charging. Returns False if it was already closed."""
    locked = _lock_open_hold(reference)
    if locked is None:
        return False
    wallet, hold = locked
    LedgerAccount.objects.filter(pk=wallet.pk).update(held=wallet.held - hold.amount)
    hold.status = HoldStatus.RELEASED
    hold.closed_at = timezone.now()
    hold.save(update_fields=["status", "closed_at"])
    return True


@transaction.atomic
def hold_resize(*, reference: str, amount: int) -> Hold:
    """Change an open hold to `amount` (a job switching to a fallback model with another price).
    Growing it needs the credits to be available; raises InsufficientCredits otherwise."""
    locked = _lock_open_hold(reference)
    if locked is None:
        raise ValueError(f"No open hold {reference!r}.")
    wallet, hold = locked
    delta = amount - hold.amount
    if delta > 0 and wallet.available < delta:
        raise InsufficientCredits(balance=wallet.balance, held=wallet.held, required=delta)
    LedgerAccount.objects.filter(pk=wallet.pk).update(held=wallet.held + delta)
    hold.amount = amount
    hold.save(update_fields=["amount"])
    return hold
