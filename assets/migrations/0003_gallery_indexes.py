"""Indexes for the gallery (assets.gallery): each starts with the owner (or the project) and continues in
a sort's key order, so a keyset page is one index seek to the cursor and a short read.

They are partial on the trash's side: the gallery never shows trashed assets except in the trash view,
which has its own small index. On PostgreSQL a GIN index serves full-text search; its expression is
written exactly as assets.gallery.FullTextMatch writes the query, or the planner would not use it.

The indexes are created by the schema editor without entering the migration state: they are the
gallery's access paths, not part of the model, and keeping them out of Asset.Meta keeps the model
readable. Dropped again on reverse.
"""

from django.db import migrations, models
from django.db.models import F, Func, Q

LIVE = Q(deleted_at__isnull=True)
SEARCH_INDEX = "assets_live_search"
# Must match assets.gallery.FullTextMatch (config 'simple', '._/' read as spaces).
SEARCH_EXPRESSION = "to_tsvector('simple'::regconfig, translate(search_text, '._/', '   '))"


class RatingKey(Func):
    # As assets.gallery.RatingKey: unrated sorts as 0, with a literal 0 so SQLite matches the index.
    template = "COALESCE(%(expressions)s, 0)"
    output_field = models.PositiveSmallIntegerField()


def _indexes() -> list[models.Index]:
    recent = [F("created_at").desc(), F("id").desc()]
    return [
        # The gallery newest (or, scanned backwards, oldest) first: `owner_id = … AND deleted_at IS NULL
        # AND (created_at, id) < (…) ORDER BY created_at DESC, id DESC`; also the date-range filters.
        models.Index(F("owner"), *recent, name="assets_live_owner_recent", condition=LIVE),
        # sort=rating: `ORDER BY COALESCE(rating, 0) DESC, created_at DESC, id DESC`.
        models.Index(F("owner"), RatingKey(F("rating")).desc(), *recent, name="assets_live_owner_rating",
                     condition=LIVE),
        # project=… (the project gallery).
        models.Index(F("project"), *recent, name="assets_live_project_recent", condition=LIVE),
        # kind=… (a rare kind among many images would otherwise be a long filtered walk).
        models.Index(F("owner"), F("kind"), *recent, name="assets_live_owner_kind", condition=LIVE),
        # favourite=true: a small index of the favourites alone.
        models.Index(F("owner"), *recent, name="assets_live_owner_favourite", condition=LIVE & Q(favourite=True)),
        # trashed=true: the trash is small; without this its list would walk every live asset first.
        models.Index(F("owner"), *recent, name="assets_trash_owner_recent", condition=Q(deleted_at__isnull=False)),
    ]


def create(apps, schema_editor):
    Asset = apps.get_model("assets", "Asset")
    for index in _indexes():
        schema_editor.add_index(Asset, index)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX {SEARCH_INDEX} ON assets_asset USING gin ({SEARCH_EXPRESSION}) WHERE deleted_at IS NULL")


def drop(apps, schema_editor):
    Asset = apps.get_model("assets", "Asset")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {SEARCH_INDEX}")
    for index in _indexes():
        schema_editor.remove_index(Asset, index)


class Migration(migrations.Migration):

    dependencies = [
        ("assets", "0002_organisation_previews_sharing"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
