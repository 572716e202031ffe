"""The trash on the web (list, restore, delete forever, empty), moving to the trash from the asset page,
the daily purge as a Celery task on the beat schedule; and the asset page's organise form."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from assets.library.organise import asset_trash, assets_trash_empty
from assets.models import Asset
from assets.services import asset_create_from_bytes
from assets.tasks import assets_files_delete, assets_purge_trash_task
from projects.services import project_create

pytestmark = pytest.mark.django_db


def image(project: Any, name: str, colour: tuple[int, int, int] = (200, 40, 90)) -> Asset:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buf, "PNG")
    return asset_create_from_bytes(project=project, data=buf.getvalue(), name=name)


def trashed(owner: Any, project: Any, name: str, colour: tuple[int, int, int] = (1, 2, 3), days_ago: int = 0) -> Asset:
    asset = image(project, name, colour)
    asset_trash(user=owner, asset_id=asset.pk)
    if days_ago:
        Asset.objects.filter(pk=asset.pk).update(deleted_at=timezone.now() - timedelta(days=days_ago))
    asset.refresh_from_db()
    return asset


def test_the_trash_lists_only_my_trashed_assets_with_the_day_they_go(signed_in: Any, owner: Any, outsider: Any,
                                                                    project: Any) -> None:
    gone = trashed(owner, project, "gone.png", days_ago=10)
    image(project, "kept.png", (9, 9, 9))
    theirs = project_create(owner=outsider, name="Theirs")
    trashed(outsider, theirs, "their-trash.png")
    html = signed_in.get(reverse("studio:trash")).text
    assert "gone.png" in html and "kept.png" not in html and "their-trash.png" not in html
    purge_day = (gone.deleted_at + timedelta(days=30)).strftime("%-d %b %Y")
    assert "deleted for good on <time datetime=" in html and purge_day in html


def test_the_empty_trash_says_so(signed_in: Any) -> None:
    assert "The trash is empty." in signed_in.get(reverse("studio:trash")).text


def test_moving_to_the_trash_from_the_asset_page_and_restoring_it(signed_in: Any, project: Any) -> None:
    asset = image(project, "shot.png")
    page = signed_in.get(reverse("studio:asset", args=[asset.pk]))
    assert reverse("studio:asset-trash", args=[asset.pk]) in page.text
    response = signed_in.post(reverse("studio:asset-trash", args=[asset.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("studio:project", args=[project.pk])
    asset.refresh_from_db()
    assert asset.deleted_at is not None
    page = signed_in.get(reverse("studio:asset", args=[asset.pk]))
    assert "In the trash since" in page.text and reverse("studio:asset-restore", args=[asset.pk]) in page.text
    signed_in.post(reverse("studio:asset-restore", args=[asset.pk]), {"next": "trash"})
    asset.refresh_from_db()
    assert asset.deleted_at is None


def test_delete_forever_needs_the_confirmation_then_removes_the_row_and_the_files(
        signed_in: Any, owner: Any, project: Any, django_capture_on_commit_callbacks: Any) -> None:
    asset = trashed(owner, project, "bye.png")
    name = asset.file.name
    signed_in.post(reverse("studio:trash-delete", args=[asset.pk]))
    assert Asset.objects.filter(pk=asset.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("studio:trash-delete", args=[asset.pk]), {"confirm": "yes"})
    assert response.status_code == 302
    assert not Asset.objects.filter(pk=asset.pk).exists() and not default_storage.exists(name)


def test_only_the_trash_deletes_forever(signed_in: Any, project: Any) -> None:
    live = image(project, "live.png")
    response = signed_in.post(reverse("studio:trash-delete", args=[live.pk]), {"confirm": "yes"})
    assert response.status_code == 404 and Asset.objects.filter(pk=live.pk).exists()


def test_empty_trash_deletes_only_the_trash(signed_in: Any, owner: Any, project: Any,
                                            django_capture_on_commit_callbacks: Any) -> None:
    for n in range(3):
        trashed(owner, project, f"t{n}.png", (n, n, n))
    kept = image(project, "kept.png", (50, 50, 50))
    signed_in.post(reverse("studio:trash-empty"))
    assert Asset.objects.count() == 4
    with django_capture_on_commit_callbacks(execute=True):
        signed_in.post(reverse("studio:trash-empty"), {"confirm": "yes"})
    assert list(Asset.objects.values_list("pk", flat=True)) == [kept.pk]


def test_a_large_trash_is_emptied_with_its_files_deleted_by_the_worker(
        signed_in: Any, owner: Any, project: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any) -> None:
    monkeypatch.setattr("assets.storage.FILES_DELETED_INLINE", 2)
    monkeypatch.setattr("assets.storage.FILES_DELETE_BATCH", 2)
    gone = [trashed(owner, project, f"t{n}.png", (n, 9, 9)) for n in range(5)]
    batches: list[list[str]] = []
    monkeypatch.setattr("assets.storage.files_delete_send", lambda names: batches.append(names))
    with django_capture_on_commit_callbacks(execute=True):
        signed_in.post(reverse("studio:trash-empty"), {"confirm": "yes"})
    assert not Asset.objects.exists()
    assert [len(b) for b in batches] == [2, 2, 1]  # the request queued them and deleted none itself
    assert all(default_storage.exists(a.file.name) for a in gone)
    for batch in batches:
        assert assets_files_delete.apply(args=[batch]).get() == len(batch)
    assert not any(default_storage.exists(a.file.name) for a in gone)


def test_with_the_broker_down_a_large_trash_deletes_its_files_in_the_request(
        owner: Any, project: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any) -> None:
    monkeypatch.setattr("assets.storage.FILES_DELETED_INLINE", 1)

    def broker_down(names: list[str]) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("assets.storage.files_delete_send", broker_down)
    gone = [trashed(owner, project, f"b{n}.png", (n, 3, 3)) for n in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        assets_trash_empty(user=owner)
    assert not any(default_storage.exists(a.file.name) for a in gone)


def test_a_file_that_cannot_be_deleted_does_not_stop_the_others(owner: Any, project: Any, monkeypatch: Any,
                                                                django_capture_on_commit_callbacks: Any,
                                                                caplog: Any) -> None:
    stuck, freed = trashed(owner, project, "stuck.png"), trashed(owner, project, "freed.png", (9, 9, 9))
    storage_class = type(default_storage._wrapped)
    real_delete = storage_class.delete

    def delete(storage: Any, name: str) -> None:
        if name == stuck.file.name:
            raise PermissionError(13, "Permission denied", name)
        real_delete(storage, name)

    monkeypatch.setattr(storage_class, "delete", delete)
    with django_capture_on_commit_callbacks(execute=True):
        assets_trash_empty(user=owner)
    assert not Asset.objects.exists()
    assert default_storage.exists(stuck.file.name) and not default_storage.exists(freed.file.name)
    assert f"could not delete stored file {stuck.file.name}" in caplog.text
    # The worker's batch retries what failed (eagerly here, at once), then gives up, naming the files.
    monkeypatch.setattr("assets.tasks._backoff", lambda retries: 0)
    assert assets_files_delete.apply(args=[[stuck.file.name]]).get() == 0
    assert f"gave up deleting 1 stored files: {stuck.file.name}" in caplog.text
    monkeypatch.undo()
    assert assets_files_delete.apply(args=[[stuck.file.name]]).get() == 1
    assert not default_storage.exists(stuck.file.name)


def test_the_daily_purge_task_deletes_what_has_been_in_the_trash_for_30_days(
        owner: Any, project: Any, django_capture_on_commit_callbacks: Any) -> None:
    old = trashed(owner, project, "old.png", days_ago=31)
    recent = trashed(owner, project, "recent.png", (4, 4, 4), days_ago=29)
    live = image(project, "live.png", (7, 7, 7))
    with django_capture_on_commit_callbacks(execute=True):
        assert assets_purge_trash_task.apply().get() == 1
    assert set(Asset.objects.values_list("pk", flat=True)) == {recent.pk, live.pk}
    assert not default_storage.exists(old.file.name)


def test_the_purge_is_on_the_beat_schedule_daily() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["assets-purge-trash"]
    assert entry["task"] == assets_purge_trash_task.name
    assert entry["schedule"] == timedelta(days=1)


# --- the asset page's organise form ---------------------------------------------------------------------

def test_the_organise_form_saves_name_tags_rating_favourite_and_notes(signed_in: Any, project: Any) -> None:
    asset = image(project, "shot.png")
    response = signed_in.post(reverse("studio:asset-organise", args=[asset.pk]),
                              {"name": "hero", "tags": "dusk, Hero shot,  dusk ", "rating": "4", "favourite": "on",
                               "notes": "keep the rim light"})
    assert response.status_code == 302 and response["Location"].endswith("#organise")
    asset.refresh_from_db()
    assert (asset.name, asset.rating, asset.favourite, asset.notes) == ("hero.png", 4, True, "keep the rim light")
    assert sorted(asset.tags.values_list("name", flat=True)) == ["Hero shot", "dusk"]
    assert "rim light" in asset.search_text
    page = signed_in.get(reverse("studio:asset", args=[asset.pk])).text
    assert 'value="dusk, Hero shot"' in page or 'value="Hero shot, dusk"' in page
    assert '<option value="4" selected>' in page


def test_with_htmx_the_card_is_swapped_and_errors_change_nothing(signed_in: Any, project: Any) -> None:
    asset = image(project, "shot.png")
    htmx = {"HTTP_HX_REQUEST": "true"}
    url = reverse("studio:asset-organise", args=[asset.pk])
    saved = signed_in.post(url, {"name": "shot", "tags": "", "rating": "", "notes": ""}, **htmx)
    assert saved.status_code == 200 and saved.text.lstrip().startswith('<section class="card" id="organise">')
    assert "Saved." in saved.text
    refused = signed_in.post(url, {"name": "  ", "tags": "x", "rating": "9", "favourite": "on"}, **htmx)
    assert refused.status_code == 200 and "field-error" in refused.text and "Saved." not in refused.text
    asset.refresh_from_db()
    assert (asset.name, asset.rating, asset.favourite) == ("shot.png", None, False)
    assert not asset.tags.exists()
    too_many = signed_in.post(url, {"name": "shot", "tags": ", ".join(f"t{n}" for n in range(60))}, **htmx)
    assert "Too many tags." in too_many.text and not asset.tags.exists()
