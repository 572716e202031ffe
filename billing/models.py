"""A double-entry credit ledger. Credits are integers.

Every posting (`Transaction`) has entries that sum to zero across accounts, and a unique idempotency
key, so a retried request or a webhook delivered twice posts once. Entries are append-only: a mistake
is corrected with another posting, never an edit. A wallet's balance is the sum of its entries; the
`balance` and `held` columns on a wallet are a cache written in the same transaction as the entries,
under the wallet's row lock, and `manage.py ledger_verify` checks them against the entries.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class AccountKind(models.TextChoices):
    WALLET = "wallet", "User wallet"
    PROMO = "promo", "Promotional grants"
    REVENUE = "revenue", "Platform revenue"
    ADJUSTMENT = "adjustment", "Admin corrections"


class LedgerAccount(models.Model):
    kind = models.CharField(max_length=16, choices=AccountKind.choices)
    # Wallets belong to a user; system accounts (promo, revenue, ...) have a code and no user.
    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="wallet")
    code = models.CharField(max_length=40, null=True, blank=True, unique=True)
    # Cached for wallets only. System accounts are never locked or updated on a posting (a hot row
    # every job would queue behind); their balance is the sum of their entries.
    balance = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind="wallet", user__isnull=False, code__isnull=True)
                           | (~models.Q(kind="wallet") & models.Q(user__isnull=True, code__isnull=False))),
                name="billing_account_wallet_has_user_system_has_code",
            ),
            models.CheckConstraint(condition=models.Q(held__gte=0), name="billing_account_held_not_negative"),
        ]

    def __str__(self) -> str:
        return f"wallet of {self.user}" if self.user_id else f"{self.code}"

    @property
    def available(self) -> int:
        return self.balance - self.held


class Transaction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20)  # grant, charge, refund, correction, topup
    memo = models.CharField(max_length=255, blank=True)
    reference = models.CharField(max_length=100, blank=True, db_index=True)  # e.g. "generation:<uuid>"
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"


class Entry(models.Model):
    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    amount = models.BigIntegerField()  # positive credits the account, negative debits it
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~models.Q(amount=0), name="billing_entry_not_zero")]
        indexes = [
            # wallet_statement() and ledger_verify: one account's entries in order.
            models.Index(fields=["account", "created_at"], name="billing_entry_account_time"),
        ]


class HoldStatus(models.TextChoices):
    OPEN = "open"
    SETTLED = "settled"
    RELEASED = "released"


class Hold(models.Model):
    """Credits reserved for a job in flight: counted against `available`, not yet moved."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="holds")
    amount = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=HoldStatus.choices, default=HoldStatus.OPEN)
    reference = models.CharField(max_length=100, unique=True)  # one hold per job: "generation:<uuid>"
    settled_amount = models.BigIntegerField(default=0)
    transaction = models.ForeignKey(Transaction, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="billing_hold_amount_not_negative"),
            models.CheckConstraint(condition=models.Q(settled_amount__gte=0)
                                   & models.Q(settled_amount__lte=models.F("amount")),
                                   name="billing_hold_settled_within_amount"),
        ]
        indexes = [
            # Open holds per wallet, for ledger_verify's recount of `held`.
            models.Index(fields=["account", "status"], name="billing_hold_account_status"),
        ]
