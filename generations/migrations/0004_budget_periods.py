from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('generations', '0003_fallbacks_and_health'),
    ]

    operations = [
        migrations.AddField(
            model_name='generation',
            name='budget_usage_ids',
            field=models.JSONField(blank=True, default=list),
        ),
    ]
