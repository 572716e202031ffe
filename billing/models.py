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
    STRIPE = "stripe", "Stripe clearing"  # credits bought: stripe -N, wallet +N; refunds reverse it
    REFERRAL = "referral", "Referral bonuses"


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


# --- plans, packs and payments ---------------------------------------------------------------------

class Plan(models.Model):
    """What a user may do and what a credit costs them. Editable in the admin."""

    code = models.SlugField(max_length=40, unique=True)  # free, pro, custom-…
    name = models.CharField(max_length=80)
    credits_per_usd = models.PositiveIntegerField(default=100, help_text="Credits charged per USD of provider cost.")
    generations_per_hour = models.PositiveIntegerField(default=10)
    uploads_per_day = models.PositiveIntegerField(default=50)
    api_calls_per_minute = models.PositiveIntegerField(default=100)
    storage_quota_mb = models.PositiveIntegerField(
        null=True, blank=True, default=2048,
        help_text="Storage for a user's assets (trash included until purged), in MB. Empty: unlimited.")
    referral_bonus_cap = models.PositiveIntegerField(
        default=10, help_text="How many referral bonuses a user on this plan can earn by sharing their code; "
                              "redemptions past it are refused.")
    is_default = models.BooleanField(default=False, help_text="The plan of users without an assignment.")

    class Meta:
        constraints = [
            # Exactly one default plan at most.
            models.UniqueConstraint(fields=["is_default"], condition=models.Q(is_default=True),
                                    name="billing_one_default_plan"),
        ]

    def __str__(self) -> str:
        return self.name


class UserPlan(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="plan_assignment")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="assignments")
    since = models.DateTimeField(auto_now_add=True)


class CreditPack(models.Model):
    """A one-off purchase offered through Stripe Checkout."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    credits = models.PositiveIntegerField()
    price_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    active = models.BooleanField(default=True)
    sort = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort", "price_cents"]
        constraints = [models.CheckConstraint(condition=models.Q(credits__gt=0), name="billing_pack_credits_positive")]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits)"


class CheckoutStatus(models.TextChoices):
    OPEN = "open"
    PAID = "paid"  # credits posted
    FAILED = "failed"  # async payment failed
    EXPIRED = "expired"
    REFUNDED = "refunded"  # fully or partly: see refunded_credits


class CheckoutSession(models.Model):
    """One Stripe Checkout Session we created. Credits are posted from Stripe's webhook events, never
    from the success redirect, exactly once (the posting's idempotency key is the session id)."""

    id = models.CharField(primary_key=True, max_length=255)  # Stripe's cs_…
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="checkout_sessions")
    pack = models.ForeignKey(CreditPack, on_delete=models.PROTECT, related_name="sessions")
    credits = models.PositiveIntegerField()
    amount_total = models.PositiveIntegerField()  # cents
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=CheckoutStatus.choices, default=CheckoutStatus.OPEN)
    url = models.URLField(max_length=2000, blank=True)
    payment_intent = models.CharField(max_length=255, blank=True, db_index=True)
    refunded_credits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class StripeEvent(models.Model):
    """Every Stripe event we accepted, stored once by its id (events arrive twice, late, out of order)."""

    id = models.CharField(primary_key=True, max_length=255)  # evt_…
    type = models.CharField(max_length=100)
    created = models.DateTimeField()  # Stripe's own timestamp
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True)


class WalletFlag(models.Model):
    """A wallet for a person to look at: a refund clawback took it below zero (`amount`: the shortfall,
    never silently clamped), or a paid Stripe session rebuilt from its metadata did not match its
    pack's price (`amount`: the credits not posted; `reference` "stripe:checkout:<cs_id>")."""

    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="flags")
    reason = models.CharField(max_length=255)
    amount = models.BigIntegerField()
    reference = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")


# --- budgets and alerts ------------------------------------------------------------------------------

class BudgetPeriod(models.TextChoices):
    TOTAL = "total"
    MONTHLY = "monthly"


class Budget(models.Model):
    """A cap on credits, for one project (total or monthly) or one user (monthly). Checked with the
    hold under this row's lock, so concurrent submits cannot overshoot it."""

    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="budgets")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="budgets")
    period = models.CharField(max_length=10, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTHLY)
    limit_credits = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=(models.Q(project__isnull=False, user__isnull=True)
                                              | models.Q(project__isnull=True, user__isnull=False, period="monthly")),
                                   name="billing_budget_project_or_monthly_user"),
            models.UniqueConstraint(fields=["project"], condition=models.Q(project__isnull=False),
                                    name="billing_one_budget_per_project"),
            models.UniqueConstraint(fields=["user"], condition=models.Q(user__isnull=False),
                                    name="billing_one_budget_per_user"),
        ]


class BudgetUsage(models.Model):
    """Credits spent and held against a budget in one period (period_start is the 1st of the month, or
    a fixed date for total budgets). Updated with every hold, settle and release of a job it covers."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="usage")
    period_start = models.DateField()
    spent = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["budget", "period_start"], name="billing_budget_usage_period")]


class BudgetAlert(models.Model):
    """A threshold crossed in a period: sent once (in-app and by email)."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateField()
    threshold = models.PositiveSmallIntegerField()  # 50, 80, 100
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["budget", "period_start", "threshold"],
                                               name="billing_budget_alert_once")]


class Notification(models.Model):
    """An in-app message (budget alerts, flagged refunds)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The header's unread count and the notifications list.
            models.Index(fields=["user", "read_at", "-created_at"], name="billing_notification_unread"),
        ]


# --- usage rollups -------------------------------------------------------------------------------------

class UsageDaily(models.Model):
    """One row per day, user, project, model: counts and money of finished generations, incremented as
    each job ends, so usage pages never scan the generations table."""

    day = models.DateField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("projects.Project", null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=120)
    provider = models.CharField(max_length=40)
    generations = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    credits = models.BigIntegerField(default=0)
    provider_cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "user", "project", "model"],
                                               name="billing_usage_daily_key")]
        indexes = [
            # usage for one user over a date range; the platform's over a range (admin).
            models.Index(fields=["user", "day"], name="billing_usage_user_day"),
            models.Index(fields=["day"], name="billing_usage_day"),
        ]


# --- referrals -----------------------------------------------------------------------------------------

class ReferralCode(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="referral_code")
    code = models.CharField(max_length=20, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Referral(models.Model):
    """A redeemed referral: both users got the bonus once (postings keyed by the referred user)."""

    code = models.ForeignKey(ReferralCode, on_delete=models.PROTECT, related_name="referrals")
    referred = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="referred_by")
    created_at = models.DateTimeField(auto_now_add=True)
