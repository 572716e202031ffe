"""The index behind exact duplicates (assets.duplicates): `owner_id = … AND deleted_at IS NULL AND
sha256 = …`, one seek per asset page. Partial on the live side, as the gallery's indexes are (0003):
duplicates are never looked for in the trash.

Created by the schema editor without entering the migration state, like 0003: an access path, not part
of the model. Dropped again on reverse.
"""

from django.db import migrations, models
from django.db.models import Q


def _index() -> models.Index:
    return models.Index(fields=["owner", "sha256"], name="assets_live_owner_sha256", condition=Q(deleted_at__isnull=True))


def create(apps, schema_editor):
    schema_editor.add_index(apps.get_model("assets", "Asset"), _index())


def drop(apps, schema_editor):
    schema_editor.remove_index(apps.get_model("assets", "Asset"), _index())


class Migration(migrations.Migration):

    dependencies = [
        ("assets", "0003_gallery_indexes"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
