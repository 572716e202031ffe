from __future__ import annotations

from django.db.models import Sum

from billing.models import Entry, Hold, HoldStatus, LedgerAccount


def wallet_drift() -> list[dict[str, int | None]]:
    """Wallets whose cached balance or held amount disagrees with their entries and open holds."""
    drift = []
    for wallet in LedgerAccount.objects.filter(kind="wallet").iterator():
        balance = Entry.objects.filter(account=wallet).aggregate(s=Sum("amount"))["s"] or 0
        held = Hold.objects.filter(account=wallet, status=HoldStatus.OPEN).aggregate(s=Sum("amount"))["s"] or 0
        if balance != wallet.balance or held != wallet.held:
            drift.append({"wallet": wallet.pk, "user": wallet.user_id, "cached_balance": wallet.balance,
                          "balance": balance, "cached_held": wallet.held, "held": held})
    return drift


def unbalanced_transactions() -> list[str]:
    sums = Entry.objects.values("transaction_id").annotate(total=Sum("amount")).exclude(total=0)
    return [str(row["transaction_id"]) for row in sums]
