"""Credit grants and corrections by an operator: ledger postings with a reason and the acting admin,
never edits of a balance. The admin's "Adjust credits" form and any support tooling call this one service."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F

from billing.models import AccountKind, LedgerAccount, Transaction, WalletFlag
from billing.services import _lock_wallet, _post, system_account
from core.errors import Conflict, InvalidRequest

KEY_PREFIX = "adjust:"


@transaction.atomic
def credits_adjust(*, user: Any, amount: int, reason: str, admin: Any, idempotency_key: str,
                   force: bool = False) -> Transaction:
    """Add (`amount` > 0) or remove (< 0) credits on `user`'s wallet against the admin-corrections
    account. A removal larger than the credits available (balance − holds of running jobs) is refused
    unless `force`d, as for a refund clawback; a forced one that takes the wallet below zero also
    flags it, so a person follows up. The same `idempotency_key` posts once: a replay with the same
    wallet and amount returns the first posting; one with different values is a conflict."""
    if not getattr(admin, "is_staff", False):
        raise PermissionDenied("Only staff can adjust credits.")
    amount = int(amount)
    if amount == 0:
        raise InvalidRequest("The amount must not be zero.", fields={"amount": ["Enter a positive or negative number."]})
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("Say why: the reason is kept on the posting.", fields={"reason": ["Required."]})
    if not idempotency_key:
        raise InvalidRequest("An idempotency key is required.")

    # The wallet lock comes first, so a replay racing the first attempt waits for it and then sees
    # its posting, and the balance check below cannot interleave with a concurrent hold.
    wallet = _lock_wallet(user.pk)
    key = f"{KEY_PREFIX}{idempotency_key}"
    existing = Transaction.objects.filter(idempotency_key=key).first()
    if existing is not None:
        if not existing.entries.filter(account=wallet, amount=amount).exists():
            raise Conflict("This idempotency key was already used for a different adjustment.",
                           code="idempotency_key_reused")
        return existing
    if amount < 0 and wallet.available + amount < 0 and not force:
        raise Conflict(
            f"Removing {-amount} credits would leave {wallet.available + amount} available "
            f"({wallet.balance} balance, {wallet.held} held by running jobs). Tick “force” to claw back anyway.",
            code="adjustment_exceeds_balance",
        )
    txn, _ = _post(idempotency_key=key, kind="grant" if amount > 0 else "correction", memo=reason,
                   reference=f"user:{user.pk}", created_by=admin,
                   legs=[(system_account("adjustment", AccountKind.ADJUSTMENT), -amount), (wallet, amount)])
    LedgerAccount.objects.filter(pk=wallet.pk).update(balance=F("balance") + amount)
    if wallet.balance + amount < 0:
        WalletFlag.objects.create(account=wallet, amount=amount, reference=key,
                                  reason=f"Forced correction by {admin}: {reason}"[:255])
    return txn
