from django.db import migrations

PLANS = [
    # code, name, credits per USD, generations/hour, uploads/day, API calls/minute, default
    ("free", "Free", 100, 10, 50, 100, True),
    ("pro", "Pro", 100, 200, 1000, 600, False),
]
PACKS = [
    # code, name, credits, price in cents
    ("starter-500", "500 credits", 500, 500),
    ("studio-2000", "2,000 credits", 2000, 1800),
    ("production-10000", "10,000 credits", 10000, 8000),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    CreditPack = apps.get_model("billing", "CreditPack")
    for code, name, rate, per_hour, per_day, per_minute, default in PLANS:
        Plan.objects.get_or_create(code=code, defaults={
            "name": name, "credits_per_usd": rate, "generations_per_hour": per_hour, "uploads_per_day": per_day,
            "api_calls_per_minute": per_minute, "is_default": default})
    for sort, (code, name, credits, cents) in enumerate(PACKS):
        CreditPack.objects.get_or_create(code=code, defaults={"name": name, "credits": credits,
                                                               "price_cents": cents, "sort": sort})


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_plans_payments_budgets_usage")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
