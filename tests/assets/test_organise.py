"""Organising assets through the services: tags, ratings, favourites, notes, moves and the trash."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.http import Http404
from django.utils import timezone

from assets.library.organise import MAX_TAGS_PER_ASSET, asset_update, assets_bulk, assets_purge_trash
from assets.library.selectors import asset_list_for_user
from assets.models import Asset, Tag
from assets.services import asset_create_from_bytes
from core.errors import InvalidRequest
from projects.services import project_create

pytestmark = pytest.mark.django_db


def text_asset(project: Any, name: str = "notes.txt", body: bytes = b"INT. KITCHEN - NIGHT") -> Asset:
    return asset_create_from_bytes(project=project, data=body, name=name)


def test_tags_are_reused_case_insensitively_and_searchable(owner: Any, project: Any) -> None:
    asset = text_asset(project)
    asset_update(user=owner, asset_id=asset.pk, tags=["Hero shot", "  hero   SHOT ", "#dusk"], notes="keep the rim light")
    asset.refresh_from_db()
    assert sorted(asset.tags.values_list("name", flat=True)) == ["Hero shot", "dusk"]
    assert Tag.objects.filter(owner=owner).count() == 2
    assert "Hero shot" in asset.search_text and "rim light" in asset.search_text and "notes.txt" in asset.search_text


def test_a_rating_outside_one_to_five_is_refused_and_nothing_changes(owner: Any, project: Any) -> None:
    asset = text_asset(project)
    with pytest.raises(InvalidRequest) as refused:
        asset_update(user=owner, asset_id=asset.pk, rating=6, favourite=True)
    assert "rating" in refused.value.fields
    asset.refresh_from_db()
    assert (asset.rating, asset.favourite) == (None, False)
    asset_update(user=owner, asset_id=asset.pk, rating=4)
    asset.refresh_from_db()
    assert asset.rating == 4


def test_renaming_keeps_the_real_extension(owner: Any, project: Any) -> None:
    asset = text_asset(project)
    assert asset_update(user=owner, asset_id=asset.pk, name="scene 12 / final").name == "scene 12 - final.txt"


def test_bulk_is_all_or_nothing_when_one_id_is_someone_elses(owner: Any, outsider: Any, project: Any) -> None:
    mine = text_asset(project)
    theirs = text_asset(project_create(owner=outsider, name="Theirs"))
    with pytest.raises(Http404):
        assets_bulk(user=owner, asset_ids=[mine.pk, theirs.pk], action="favourite")
    assert not Asset.objects.filter(favourite=True).exists()


def test_bulk_tag_untag_move_and_favourite(owner: Any, project: Any) -> None:
    a, b = text_asset(project, "a.txt"), text_asset(project, "b.txt")
    other = project_create(owner=owner, name="Other")
    assert assets_bulk(user=owner, asset_ids=[a.pk, b.pk], action="tag", tags=["selects"]) == 2
    assert assets_bulk(user=owner, asset_ids=[a.pk], action="untag", tags=["selects"]) == 1
    assert list(Asset.objects.filter(tags__name="selects").values_list("name", flat=True)) == ["b.txt"]
    assert assets_bulk(user=owner, asset_ids=[a.pk, b.pk], action="move", project_id=other.pk) == 2
    assert set(Asset.objects.values_list("project", flat=True)) == {other.pk}
    assert assets_bulk(user=owner, asset_ids=[a.pk], action="favourite") == 1
    with pytest.raises(InvalidRequest):
        assets_bulk(user=owner, asset_ids=[a.pk], action="explode")


def test_untag_finds_a_tag_whatever_case_it_is_typed_in(owner: Any, project: Any) -> None:
    asset = text_asset(project)
    assets_bulk(user=owner, asset_ids=[asset.pk], action="tag", tags=["Sunset"])
    assert assets_bulk(user=owner, asset_ids=[asset.pk], action="untag", tags=["sunset"]) == 1
    assert not asset.tags.exists()


def test_bulk_tagging_keeps_every_asset_within_the_tag_limit(owner: Any, project: Any) -> None:
    crowded, roomy = text_asset(project, "crowded.txt"), text_asset(project, "roomy.txt")
    asset_update(user=owner, asset_id=crowded.pk, tags=[f"t{n}" for n in range(MAX_TAGS_PER_ASSET - 1)])
    with pytest.raises(InvalidRequest) as refused:
        assets_bulk(user=owner, asset_ids=[crowded.pk, roomy.pk], action="tag", tags=["one", "two"])
    assert "1 of these assets would have more than 50 tags" in refused.value.message
    assert crowded.tags.count() == MAX_TAGS_PER_ASSET - 1 and not roomy.tags.exists()  # nothing was tagged
    with pytest.raises(InvalidRequest):
        assets_bulk(user=owner, asset_ids=[roomy.pk], action="tag", tags=[f"n{n}" for n in range(51)])
    assert assets_bulk(user=owner, asset_ids=[crowded.pk, roomy.pk], action="tag", tags=["one"]) == 2
    assert crowded.tags.count() == MAX_TAGS_PER_ASSET


def test_a_new_name_fits_the_column_with_its_extension(owner: Any, project: Any) -> None:
    asset = text_asset(project, "notes.txt")
    with pytest.raises(InvalidRequest) as refused:
        asset_update(user=owner, asset_id=asset.pk, name="n" * 255)
    assert refused.value.fields == {"name": ["At most 255 characters, with the .txt ending."]}
    assert asset_update(user=owner, asset_id=asset.pk, name="n" * 251).name == "n" * 251 + ".txt"


def test_moving_into_someone_elses_project_is_404(owner: Any, outsider: Any, project: Any) -> None:
    asset = text_asset(project)
    with pytest.raises(Http404):
        assets_bulk(user=owner, asset_ids=[asset.pk], action="move", project_id=project_create(owner=outsider, name="X").pk)
    asset.refresh_from_db()
    assert asset.project_id == project.pk


def test_the_trash_hides_restores_and_purges_after_thirty_days(owner: Any, project: Any,
                                                               django_capture_on_commit_callbacks: Any) -> None:
    keep, old = text_asset(project, "keep.txt"), text_asset(project, "old.txt")
    assets_bulk(user=owner, asset_ids=[keep.pk, old.pk], action="trash")
    assert not asset_list_for_user(owner).exists()
    assets_bulk(user=owner, asset_ids=[keep.pk], action="restore")
    assert list(asset_list_for_user(owner)) == [keep]
    assets_bulk(user=owner, asset_ids=[keep.pk], action="trash")
    Asset.objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    old_file = Asset.objects.get(pk=old.pk).file.name
    with django_capture_on_commit_callbacks(execute=True):
        assert assets_purge_trash() == 1
    assert not Asset.objects.filter(pk=old.pk).exists() and not default_storage.exists(old_file)
    assert Asset.objects.filter(pk=keep.pk).exists()  # trashed today: kept for 30 days
