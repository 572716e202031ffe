"""Duplicates: the same bytes (SHA-256) and the same picture (perceptual hash), among one user's assets."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from PIL import Image

from assets.library import duplicates as duplicates_module
from assets.library.duplicates import NEAR_THRESHOLD, asset_duplicates, phash_distance
from assets.library.organise import asset_trash
from assets.models import Asset
from assets.previews.service import preview_make
from assets.services import asset_create_from_bytes
from projects.services import project_create

pytestmark = pytest.mark.django_db


def picture(seed: int, size: int = 256, fmt: str = "PNG", quality: int = 90) -> bytes:
    """A photo-like picture: smooth random blobs, different for each seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def hashed(project: Any, data: bytes, name: str) -> Asset:
    """Stored, with its previews (and phash) made by the preview worker's own code."""
    asset = asset_create_from_bytes(project=project, data=data, name=name)
    preview_make(asset.pk)
    asset.refresh_from_db()
    assert len(asset.phash) == 16
    return asset


def test_the_same_bytes_are_exact_duplicates_in_any_of_my_projects_never_anyone_elses(
        owner: Any, outsider: Any, project: Any) -> None:
    data = picture(1)
    original = asset_create_from_bytes(project=project, data=data, name="a.png")
    copy = asset_create_from_bytes(project=project_create(owner=owner, name="Other"), data=data, name="copy.png")
    trashed = asset_create_from_bytes(project=project, data=data, name="trashed.png")
    asset_trash(user=owner, asset_id=trashed.pk)
    asset_create_from_bytes(project=project_create(owner=outsider, name="Theirs"), data=data, name="theirs.png")
    asset_create_from_bytes(project=project, data=picture(2), name="different.png")
    found = asset_duplicates(user=owner, asset_id=original.pk)
    assert [a.pk for a in found.exact] == [copy.pk]
    with pytest.raises(Http404):
        asset_duplicates(user=outsider, asset_id=original.pk)


def test_a_resized_jpeg_of_the_same_picture_is_a_near_duplicate_and_another_picture_is_not(
        owner: Any, project: Any) -> None:
    original = hashed(project, picture(7), "original.png")
    smaller = hashed(project, picture(7, size=180, fmt="JPEG", quality=70), "smaller.jpg")
    other = hashed(project, picture(8), "other.png")
    assert phash_distance(original.phash, smaller.phash) <= NEAR_THRESHOLD < phash_distance(original.phash, other.phash)
    found = asset_duplicates(user=owner, asset_id=original.pk)
    assert found.exact == []
    assert [(a.pk, d) for a, d in found.near] == [(smaller.pk, phash_distance(original.phash, smaller.phash))]
    assert not found.near_truncated


def test_near_duplicates_are_closest_first_and_exact_ones_are_not_repeated(owner: Any, project: Any) -> None:
    original = hashed(project, picture(3), "original.png")
    same_bytes = hashed(project, picture(3), "same.png")
    near = hashed(project, picture(3, size=200, fmt="JPEG", quality=60), "near.jpg")
    found = asset_duplicates(user=owner, asset_id=original.pk)
    assert [a.pk for a in found.exact] == [same_bytes.pk]
    assert [a.pk for a, _ in found.near] == [near.pk]


def test_assets_without_a_hash_or_of_another_kind_are_not_compared(owner: Any, project: Any) -> None:
    original = hashed(project, picture(4), "original.png")
    pending = asset_create_from_bytes(project=project, data=picture(4, size=200, fmt="JPEG"), name="pending.jpg")
    assert pending.phash == ""
    text = asset_create_from_bytes(project=project, data=b"INT. HOUSE - DAY", name="script.txt")
    Asset.objects.filter(pk=text.pk).update(phash=original.phash)  # same hash, but not a picture
    assert asset_duplicates(user=owner, asset_id=original.pk).near == []


def test_the_scan_is_bounded_and_says_when_it_stopped(owner: Any, project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    original = hashed(project, picture(5), "original.png")
    for n in range(3):
        hashed(project, picture(5, size=200 + n * 10, fmt="JPEG"), f"near{n}.jpg")
    monkeypatch.setattr(duplicates_module, "NEAR_SCAN_LIMIT", 2)
    found = asset_duplicates(user=owner, asset_id=original.pk)
    assert found.near_truncated and len(found.near) == 2


def test_the_query_count_does_not_grow_with_the_number_of_candidates(owner: Any, project: Any) -> None:
    original = hashed(project, picture(6), "original.png")
    hashed(project, picture(6, size=210, fmt="JPEG"), "n0.jpg")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            asset_duplicates(user=owner, asset_id=original.pk)
        return len(ctx.captured_queries)

    few = queries()
    for n in range(1, 5):
        hashed(project, picture(6, size=210 + n * 7, fmt="JPEG"), f"n{n}.jpg")
    assert queries() == few
    assert len(asset_duplicates(user=owner, asset_id=original.pk).near) == 5


def test_the_api_lists_exact_and_near_duplicates(owner_api: Any, outsider_api: Any, project: Any) -> None:
    original = hashed(project, picture(9), "original.png")
    same = asset_create_from_bytes(project=project, data=picture(9), name="same.png")
    near = hashed(project, picture(9, size=190, fmt="JPEG"), "near.jpg")
    response = owner_api.get(f"/api/v1/assets/{original.pk}/duplicates")
    assert response.status_code == 200
    body = response.json()
    assert [a["id"] for a in body["exact"]] == [str(same.pk)]
    assert [a["id"] for a in body["near"]] == [str(near.pk)]
    assert body["near"][0]["distance"] == phash_distance(original.phash, near.phash)
    assert body["threshold"] == NEAR_THRESHOLD and body["near_truncated"] is False
    assert outsider_api.get(f"/api/v1/assets/{original.pk}/duplicates").status_code == 404


def test_the_asset_page_shows_its_duplicates(client: Any, owner: Any, project: Any) -> None:
    original = hashed(project, picture(10), "original.png")
    same = asset_create_from_bytes(project=project, data=picture(10), name="same.png")
    near = hashed(project, picture(10, size=190, fmt="JPEG"), "near.jpg")
    client.force_login(owner)
    html = client.get(reverse("studio:asset", args=[original.pk])).text
    section = html[html.index('id="duplicates"'):]
    assert "Same file" in section and reverse("studio:asset", args=[same.pk]) in section
    assert "Look alike" in section and reverse("studio:asset", args=[near.pk]) in section
