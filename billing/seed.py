"""The plans and credit packs a new studio starts with (migration 0003 applies them; operators edit
them in the admin afterwards). Idempotent: existing rows are left as they are."""

from __future__ import annotations

from typing import Any

PLANS = [
    # code, name, credits per USD, generations/hour, uploads/day, API calls/minute, default
    ("free", "Free", 100, 10, 50, 100, True),
    ("pro", "Pro", 100, 200, 1000, 600, False),
]
# Storage quota per plan in MB (added after the first seed; migration 0004 applies it to existing plans).
STORAGE_QUOTAS_MB = {"free": 2048, "pro": 102_400}
PACKS = [
    # code, name, credits, price in cents
    ("starter-500", "500 credits", 500, 500),
    ("studio-2000", "2,000 credits", 2000, 1800),
    ("production-10000", "10,000 credits", 10000, 8000),
]


def seed_defaults(plan_model: Any, pack_model: Any) -> None:
    """Takes the model classes, so the migration can pass its historical models."""
    for code, name, rate, per_hour, per_day, per_minute, default in PLANS:
        plan_model.objects.get_or_create(code=code, defaults={
            "name": name, "credits_per_usd": rate, "generations_per_hour": per_hour, "uploads_per_day": per_day,
            "api_calls_per_minute": per_minute,
            "is_default": default and not plan_model.objects.filter(is_default=True).exists()})
    seed_storage_quotas(plan_model)
    for sort, (code, name, credits, cents) in enumerate(PACKS):
        pack_model.objects.get_or_create(code=code, defaults={"name": name, "credits": credits,
                                                                "price_cents": cents, "sort": sort})


def seed_storage_quotas(plan_model: Any) -> None:
    if not any(f.name == "storage_quota_mb" for f in plan_model._meta.get_fields()):
        return  # an older historical model (migration 0003), before quotas existed
    for code, quota in STORAGE_QUOTAS_MB.items():
        plan_model.objects.filter(code=code).update(storage_quota_mb=quota)
