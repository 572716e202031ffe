from django.db import migrations


def seed(apps, schema_editor):
    from billing.seed import seed_defaults

    seed_defaults(apps.get_model("billing", "Plan"), apps.get_model("billing", "CreditPack"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_plans_payments_budgets_usage")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
