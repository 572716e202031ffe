"""The gallery API: GET /api/v1/assets with filters, sorts and keyset pages; PATCH, DELETE, restore and
bulk on assets; GET /api/v1/tags. The rows are made as the services make them (`make_asset`, also used
by test_search.py and test_gallery_page.py); the list never opens files, so none are stored."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from assets.library.organise import asset_update
from assets.models import Asset, Tag
from assets.services import asset_search_text
from projects.services import project_create

BASE_TIME = timezone.make_aware(datetime(2025, 3, 10, 12, 0, 0))


def make_asset(owner: Any, project: Any, *, name: str = "picture.png", kind: str = "image",
               created_at: datetime | None = None, tags: list[str] | None = None, notes: str | None = None,
               **fields: Any) -> Asset:
    """One asset row, its search_text as asset_create and asset_update keep it."""
    width, height = fields.pop("width", 1024), fields.pop("height", 1024)
    asset = Asset(owner=owner, project=project, kind=kind, name=name, file=f"test/{uuid.uuid4().hex}.bin",
                  mime=fields.pop("mime", "image/png"), size=fields.pop("size", 100), sha256="0" * 64,
                  source=fields.pop("source", "upload"), width=width, height=height,
                  aspect=(width / height) if width and height else None, **fields)
    asset.search_text = asset_search_text(asset, [])
    asset.save()
    changes: dict[str, Any] = {}
    if tags is not None:
        changes["tags"] = tags
    if notes is not None:
        changes["notes"] = notes
    if changes:
        asset_update(user=owner, asset_id=asset.pk, **changes)
    if created_at is not None:
        Asset.objects.filter(pk=asset.pk).update(created_at=created_at)
    asset.refresh_from_db()
    return asset


def make_many(owner: Any, project: Any, n: int, *, ties: int = 1, **fields: Any) -> list[Asset]:
    """n assets a minute apart, `ties` at a time sharing one created_at (as a bulk import does)."""
    return [make_asset(owner, project, name=f"asset-{i:04d}.png", created_at=BASE_TIME + timedelta(minutes=i // ties),
                       **fields) for i in range(n)]


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def walk(api: APIClient, params: dict[str, Any]) -> list[str]:
    """Every page by following `next`; returns the ids in order."""
    seen: list[str] = []
    response = api.get("/api/v1/assets", params)
    while True:
        seen += ids(response)
        following = response.json()["next"]
        if not following:
            return seen
        response = api.get(following)


# --- filters ---------------------------------------------------------------------------------------------

@pytest.fixture
def mixed(owner: Any, project: Any) -> dict[str, Asset]:
    """One asset per distinguishing trait, everything else alike."""
    other_project = project_create(owner=owner, name="Second")
    day = timedelta(days=1)
    return {
        "plain": make_asset(owner, project, name="plain.png", created_at=BASE_TIME),
        "video": make_asset(owner, project, name="clip.mp4", kind="video", mime="video/mp4", created_at=BASE_TIME + day,
                            width=1920, height=1080),
        "generated": make_asset(owner, project, name="gen.png", source="generation", model_id="local/sketch",
                                provider="local", prompt="a red fox", created_at=BASE_TIME + 2 * day),
        "elsewhere": make_asset(owner, other_project, name="other.png", created_at=BASE_TIME + 3 * day),
        "tagged": make_asset(owner, project, name="tagged.png", tags=["sky", "Blue"], created_at=BASE_TIME + 4 * day),
        "one_tag": make_asset(owner, project, name="sky-only.png", tags=["sky"], created_at=BASE_TIME + 5 * day),
        "favourite": make_asset(owner, project, name="fav.png", favourite=True, created_at=BASE_TIME + 6 * day),
        "rated": make_asset(owner, project, name="rated.png", rating=4, created_at=BASE_TIME + 7 * day),
        "low": make_asset(owner, project, name="low.png", rating=2, created_at=BASE_TIME + 8 * day),
        "portrait": make_asset(owner, project, name="tall.png", width=800, height=1200, created_at=BASE_TIME + 9 * day),
        "audio": make_asset(owner, project, name="voice.mp3", kind="audio", mime="audio/mpeg", width=None, height=None,
                            created_at=BASE_TIME + 10 * day),
        "trashed": make_asset(owner, project, name="gone.png", deleted_at=BASE_TIME + 11 * day,
                              created_at=BASE_TIME + 11 * day),
    }


FILTER_CASES = [
    ({"kind": "video"}, {"video"}),
    ({"kind": "audio"}, {"audio"}),
    ({"source": "generation"}, {"generated"}),
    ({"model": "local/sketch"}, {"generated"}),
    ({"provider": "local"}, {"generated"}),
    ({"tag": "sky"}, {"tagged", "one_tag"}),
    ({"tag": ["sky", "blue"]}, {"tagged"}),  # every tag named, case-insensitively
    ({"favourite": "true"}, {"favourite"}),
    ({"rating_gte": "3"}, {"rated"}),
    ({"rating_gte": "2"}, {"rated", "low"}),
    ({"created_after": "2025-03-17", "created_before": "2025-03-18"}, {"rated", "low"}),  # dates are whole days
    ({"created_after": "2025-03-17T12:00:00+00:00", "created_before": "2025-03-18T12:00:00+00:00"}, {"rated"}),
    ({"aspect": "landscape"}, {"video"}),
    ({"aspect": "portrait"}, {"portrait"}),
    ({"aspect_max": "0.9"}, {"portrait"}),
    ({"aspect_min": "1.5"}, {"video"}),
    ({"trashed": "true"}, {"trashed"}),
    ({"kind": "image", "rating_gte": "3"}, {"rated"}),
]


@pytest.mark.parametrize(("params", "expected"), FILTER_CASES)
def test_each_filter_narrows_the_list_to_the_assets_that_match(owner_api: APIClient, mixed: dict[str, Asset],
                                                               params: dict[str, Any], expected: set[str]) -> None:
    names = {str(asset.pk): key for key, asset in mixed.items()}
    assert {names[i] for i in ids(owner_api.get("/api/v1/assets", params))} == expected


def test_without_filters_the_list_is_everything_outside_the_trash(owner_api: APIClient, mixed: dict[str, Asset]) -> None:
    assert set(ids(owner_api.get("/api/v1/assets"))) == {str(a.pk) for k, a in mixed.items() if k != "trashed"}


def test_square_means_within_five_percent_of_one_to_one(owner_api: APIClient, owner: Any, project: Any) -> None:
    square = make_asset(owner, project, width=1024, height=1000)
    make_asset(owner, project, width=1200, height=1000)
    make_asset(owner, project, kind="audio", width=None, height=None)
    assert ids(owner_api.get("/api/v1/assets", {"aspect": "square"})) == [str(square.pk)]


def test_the_project_filter_shows_one_project_and_hides_another_users(owner_api: APIClient, outsider_api: APIClient,
                                                                      mixed: dict[str, Asset]) -> None:
    project_id = mixed["elsewhere"].project_id
    assert ids(owner_api.get("/api/v1/assets", {"project": str(project_id)})) == [str(mixed["elsewhere"].pk)]
    assert outsider_api.get("/api/v1/assets", {"project": str(project_id)}).status_code == 404


def test_an_outsider_sees_none_of_the_owners_assets(outsider_api: APIClient, mixed: dict[str, Asset]) -> None:
    assert ids(outsider_api.get("/api/v1/assets")) == []
    assert ids(outsider_api.get("/api/v1/assets", {"trashed": "true"})) == []
    assert ids(outsider_api.get("/api/v1/assets", {"tag": "sky"})) == []


@pytest.mark.parametrize(("params", "field"), [
    ({"kind": "hologram"}, "kind"),
    ({"source": "dream"}, "source"),
    ({"rating_gte": "9"}, "rating_gte"),
    ({"rating_gte": "three"}, "rating_gte"),
    ({"favourite": "maybe"}, "favourite"),
    ({"trashed": "sometimes"}, "trashed"),
    ({"created_after": "yesterday"}, "created_after"),
    ({"created_before": "2025-02-30"}, "created_before"),
    ({"created_before": "9999-12-31"}, "created_before"),  # the day after does not exist
    ({"created_before": "9999-12-31T23:59:59-05:00"}, "created_before"),  # nor does this in UTC
    ({"created_after": "0001-01-01T00:00:00+05:00"}, "created_after"),
    ({"aspect": "round"}, "aspect"),
    ({"aspect_min": "wide"}, "aspect_min"),
    ({"sort": "random"}, "sort"),
    ({"page_size": "0"}, "page_size"),
    ({"page_size": "500"}, "page_size"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"project": "not-a-uuid"}, "project"),
    ({"q": "x" * 201}, "q"),
    ({"tag": [f"t{i}" for i in range(21)]}, "tag"),
])
def test_a_bad_filter_value_is_a_400_naming_the_field(owner_api: APIClient, params: dict[str, Any], field: str) -> None:
    response = owner_api.get("/api/v1/assets", params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert error["message"].startswith(field)


# --- keyset pages ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sort", ["newest", "oldest", "rating"])
def test_pages_follow_the_sort_with_no_duplicates_or_gaps_even_with_tied_timestamps(
        owner_api: APIClient, owner: Any, project: Any, sort: str) -> None:
    assets = make_many(owner, project, 23, ties=4)  # 4 assets share each created_at
    for i, asset in enumerate(assets):
        Asset.objects.filter(pk=asset.pk).update(rating=[None, 1, 5, 3][i % 4])
    seen = walk(owner_api, {"sort": sort, "page_size": 5})
    rows = {str(a.pk): a for a in Asset.objects.all()}
    assert len(seen) == len(set(seen)) == 23
    expected = sorted(rows.values(), key=lambda a: (a.created_at, a.pk.hex) if sort == "oldest" else
                      ((a.rating or 0) if sort == "rating" else 0, a.created_at, a.pk.hex), reverse=sort != "oldest")
    # The database orders UUIDs as PostgreSQL's uuid type or SQLite's hex text: both compare like .hex.
    assert seen == [str(a.pk) for a in expected]


def test_assets_added_between_pages_neither_repeat_nor_push_others_out(owner_api: APIClient, owner: Any,
                                                                       project: Any) -> None:
    original = make_many(owner, project, 12, ties=3)
    first = owner_api.get("/api/v1/assets", {"page_size": 5})
    # New uploads land at the top while the user scrolls; some older assets are trashed meanwhile.
    for i in range(4):
        make_asset(owner, project, name=f"new-{i}.png", created_at=BASE_TIME + timedelta(days=1))
    seen = ids(first)
    response = owner_api.get(first.json()["next"])
    while True:
        seen += ids(response)
        if not response.json()["next"]:
            break
        response = owner_api.get(response.json()["next"])
    assert len(seen) == len(set(seen))
    assert set(seen) == {str(a.pk) for a in original}


def test_previous_goes_back_to_exactly_the_page_before(owner_api: APIClient, owner: Any, project: Any) -> None:
    make_many(owner, project, 10, ties=2)
    first = owner_api.get("/api/v1/assets", {"page_size": 4})
    assert first.json()["previous"] is None
    second = owner_api.get(first.json()["next"])
    third = owner_api.get(second.json()["next"])
    assert third.json()["next"] is None
    assert ids(owner_api.get(third.json()["previous"])) == ids(second)
    back = owner_api.get(second.json()["previous"])
    assert ids(back) == ids(first)
    assert back.json()["previous"] is None
    assert ids(owner_api.get(back.json()["next"])) == ids(second)


def test_a_cursor_of_another_sort_is_refused(owner_api: APIClient, owner: Any, project: Any) -> None:
    make_many(owner, project, 3)
    newest = owner_api.get("/api/v1/assets", {"page_size": 1}).json()["next"]
    cursor = newest.split("cursor=")[1].split("&")[0]
    response = owner_api.get("/api/v1/assets", {"sort": "rating", "cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["fields"]


def _forged(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


RATING_OVERFLOW = _forged('{"s":"rating","k":[1000000000000000000000000000000,"2024-01-01T00:00:00+00:00",'
                          '"6f1c5b0e-8a5e-4c61-9d3b-2a1d2e3f4a5b"],"b":0}')  # past any integer column


@pytest.mark.parametrize("cursor", [
    _forged('{"s":"newest","k":["2024-01-01T00:00:00+00:00",5],"b":0}'),  # a number for the id
    _forged('{"s":"newest","k":[["x"],{"y":1}],"b":0}'),  # a list and an object
    _forged('{"s":"newest","k":["0001-01-01T00:00:00+05:00","6f1c5b0e-8a5e-4c61-9d3b-2a1d2e3f4a5b"],"b":0}'),
    _forged('{"s":"newest","k":["2024-01-01T00:00:00",' '"6f1c5b0e-8a5e-4c61-9d3b-2a1d2e3f4a5b"],"b":0}'),  # naive
    RATING_OVERFLOW,
    _forged("[" * 3000),  # nested past the JSON parser's recursion limit
    "A" * 5000,
    "not base64 at all!",
])
def test_a_forged_cursor_is_a_400_naming_the_cursor_never_a_500(owner_api: APIClient, owner: Any, project: Any,
                                                                 cursor: str) -> None:
    make_many(owner, project, 2)
    sort = "rating" if cursor == RATING_OVERFLOW else "newest"
    response = owner_api.get("/api/v1/assets", {"cursor": cursor, "sort": sort})
    assert response.status_code == 400, response.content[:300]
    assert "cursor" in response.json()["error"]["fields"]


def test_a_page_runs_no_count_and_the_same_queries_at_any_depth(owner_api: APIClient, owner: Any, project: Any) -> None:
    make_many(owner, project, 30, tags=["sky"])
    owner_api.get("/api/v1/tags")  # the token's last-use stamp is written on its first request only
    counts = []
    url: str | None = "/api/v1/assets?page_size=5&tag=sky&q=asset"
    while url:
        with CaptureQueriesContext(connection) as ctx:
            response = owner_api.get(url)
        assert response.status_code == 200
        assert not [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
        counts.append(len(ctx))
        url = response.json()["next"]
    assert len(counts) == 6
    assert len(set(counts)) == 1, counts
    gallery = [q for q in ctx.captured_queries if "assets_" in q["sql"]]
    assert len(gallery) == 2  # the page, and its tags


# --- what an asset shows ---------------------------------------------------------------------------------

def test_an_asset_shows_its_organisation_and_thumbnails_once_previews_exist(owner_api: APIClient, owner: Any,
                                                                            project: Any) -> None:
    pending = make_asset(owner, project, name="a.png", tags=["b", "a"], notes="keep", rating=3, favourite=True,
                         prompt="moon", model_id="local/sketch", provider="local", blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj")
    ready = make_asset(owner, project, name="b.png", preview_status="ready", thumb_small="previews/b-small.webp",
                       thumb_large="previews/b-large.webp")
    rows = {row["id"]: row for row in owner_api.get("/api/v1/assets").json()["results"]}
    row = rows[str(pending.pk)]
    assert row["tags"] == ["a", "b"]
    assert (row["notes"], row["rating"], row["favourite"], row["prompt"]) == ("keep", 3, True, "moon")
    assert (row["model_id"], row["provider"], row["aspect"]) == ("local/sketch", "local", 1.0)
    assert row["preview_status"] == "pending" and row["thumbnail_small_url"] is None
    assert row["blurhash"] == "LEHV6nWB2yk8pyo0adR*.7kCMdnj"
    assert row["deleted_at"] is None
    ready_row = rows[str(ready.pk)]
    # The thumbnail endpoint's versioned URLs (assets.api.previews), cached for good by the client.
    assert ready_row["thumbnail_small_url"].startswith(
        f"http://testserver/api/v1/assets/{ready.pk}/thumbnail?size=small&v=")
    assert ready_row["thumbnail_large_url"].startswith(
        f"http://testserver/api/v1/assets/{ready.pk}/thumbnail?size=large&v=")


def test_the_fast_representation_is_drfs_own(owner: Any, project: Any) -> None:
    """AssetSerializer reads most fields straight off the model for speed; it must say exactly what
    DRF's field-by-field path says, for full and for empty values."""
    from rest_framework.serializers import ModelSerializer
    from rest_framework.test import APIRequestFactory

    from assets.api.assets import AssetSerializer
    from assets.library.selectors import asset_gallery_for_user

    parent = make_asset(owner, project, name="p.png", width=None, height=None, kind="audio", duration=None)
    make_asset(owner, project, name="full.png", tags=["b", "a"], notes="n", rating=5, favourite=True, prompt="x",
               model_id="m", provider="p", parent=parent, duration=2.5, metadata={"k": [1, 2]},
               deleted_at=timezone.now(), preview_status="ready", thumb_small="s.webp", thumb_large="l.webp",
               blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj")
    request = APIRequestFactory().get("/api/v1/assets")
    for trashed in ("false", "true"):
        for asset in asset_gallery_for_user(owner, {"trashed": trashed}).assets:
            serializer = AssetSerializer(asset, context={"request": request})
            assert serializer.data == ModelSerializer.to_representation(serializer, asset)


# --- changes ---------------------------------------------------------------------------------------------

def test_patch_changes_what_it_names_and_leaves_the_rest(owner_api: APIClient, owner: Any, project: Any) -> None:
    asset = make_asset(owner, project, name="shot.png", notes="old", rating=2)
    response = owner_api.patch(f"/api/v1/assets/{asset.pk}", {"name": "Hero", "tags": ["final", "hero"],
                                                              "favourite": True}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["tags"], body["favourite"], body["notes"], body["rating"]) == (
        "Hero.png", ["final", "hero"], True, "old", 2)
    asset.refresh_from_db()
    assert "hero" in asset.search_text.lower() and "final" in asset.search_text
    assert owner_api.patch(f"/api/v1/assets/{asset.pk}", {"rating": None}, format="json").json()["rating"] is None


@pytest.mark.parametrize(("body", "field"), [({"rating": 7}, "rating"), ({"tags": "one"}, "tags"),
                                             ({"name": ""}, "name"), ({"favourite": "perhaps"}, "favourite")])
def test_patch_refuses_bad_values_naming_the_field_and_changes_nothing(owner_api: APIClient, owner: Any, project: Any,
                                                                       body: dict[str, Any], field: str) -> None:
    asset = make_asset(owner, project, name="shot.png", rating=2)
    response = owner_api.patch(f"/api/v1/assets/{asset.pk}", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    asset.refresh_from_db()
    assert (asset.name, asset.rating, asset.favourite) == ("shot.png", 2, False)


def test_delete_moves_to_the_trash_and_restore_brings_it_back(owner_api: APIClient, owner: Any, project: Any) -> None:
    asset = make_asset(owner, project)
    assert owner_api.delete(f"/api/v1/assets/{asset.pk}").status_code == 204
    asset.refresh_from_db()
    assert asset.deleted_at is not None
    assert ids(owner_api.get("/api/v1/assets")) == []
    assert ids(owner_api.get("/api/v1/assets", {"trashed": "true"})) == [str(asset.pk)]
    assert owner_api.delete(f"/api/v1/assets/{asset.pk}").status_code == 204  # already there: the same answer
    restored = owner_api.post(f"/api/v1/assets/{asset.pk}/restore")
    assert restored.status_code == 200
    assert restored.json()["deleted_at"] is None
    assert ids(owner_api.get("/api/v1/assets")) == [str(asset.pk)]


def test_an_outsider_gets_404_changing_someone_elses_asset_and_nothing_changes(
        outsider_api: APIClient, owner: Any, project: Any) -> None:
    asset = make_asset(owner, project, name="mine.png")
    url = f"/api/v1/assets/{asset.pk}"
    assert outsider_api.patch(url, {"name": "stolen"}, format="json").status_code == 404
    assert outsider_api.delete(url).status_code == 404
    assert outsider_api.post(f"{url}/restore").status_code == 404
    assert outsider_api.post("/api/v1/assets/bulk", {"assets": [str(asset.pk)], "action": "trash"},
                             format="json").status_code == 404
    asset.refresh_from_db()
    assert (asset.name, asset.deleted_at) == ("mine.png", None)


def test_bulk_applies_one_action_to_every_asset(owner_api: APIClient, owner: Any, project: Any) -> None:
    assets = make_many(owner, project, 3)
    target = project_create(owner=owner, name="Finals")
    payload = {"assets": [str(a.pk) for a in assets]}
    assert owner_api.post("/api/v1/assets/bulk", {**payload, "action": "tag", "tags": ["keep"]},
                          format="json").json() == {"action": "tag", "count": 3}
    assert owner_api.post("/api/v1/assets/bulk", {**payload, "action": "move", "project": str(target.pk)},
                          format="json").json()["count"] == 3
    assert owner_api.post("/api/v1/assets/bulk", {**payload, "action": "rate", "rating": 5},
                          format="json").status_code == 200
    assert set(ids(owner_api.get("/api/v1/assets", {"project": str(target.pk), "tag": "keep", "rating_gte": 5}))) == {
        str(a.pk) for a in assets}


def test_bulk_is_all_or_nothing_when_one_id_is_not_the_users(owner_api: APIClient, owner: Any, outsider: Any,
                                                             project: Any) -> None:
    mine = make_many(owner, project, 2)
    theirs = make_asset(outsider, project_create(owner=outsider, name="Theirs"))
    response = owner_api.post("/api/v1/assets/bulk", {"assets": [str(mine[0].pk), str(theirs.pk), str(mine[1].pk)],
                                                      "action": "favourite"}, format="json")
    assert response.status_code == 404
    assert not Asset.objects.filter(favourite=True).exists()
    bad_move = owner_api.post("/api/v1/assets/bulk", {"assets": [str(a.pk) for a in mine], "action": "move"},
                              format="json")
    assert bad_move.status_code == 400 and "project" in bad_move.json()["error"]["fields"]
    assert set(Asset.objects.filter(owner=owner).values_list("project", flat=True)) == {project.pk}


@pytest.mark.parametrize(("body", "field"), [
    ({"assets": [], "action": "trash"}, "assets"),
    ({"assets": ["nope"], "action": "trash"}, "assets"),
    ({"action": "trash"}, "assets"),
    ({"assets": [str(uuid.uuid4())], "action": "explode"}, "action"),
    ({"assets": [str(uuid.uuid4())], "action": "rate", "rating": 9}, "rating"),
])
def test_bulk_refuses_bad_input_naming_the_field(owner_api: APIClient, body: dict[str, Any], field: str) -> None:
    response = owner_api.post("/api/v1/assets/bulk", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


# --- tags ------------------------------------------------------------------------------------------------

def test_tags_list_the_users_tags_with_counts_outside_the_trash(owner_api: APIClient, outsider_api: APIClient,
                                                                owner: Any, project: Any) -> None:
    make_asset(owner, project, tags=["sky", "sea"])
    make_asset(owner, project, tags=["sky"])
    make_asset(owner, project, tags=["sky"], deleted_at=timezone.now())
    Tag.objects.create(owner=owner, name="unused")
    body = owner_api.get("/api/v1/tags").json()
    assert [(t["name"], t["asset_count"]) for t in body] == [("sea", 1), ("sky", 2), ("unused", 0)]
    assert outsider_api.get("/api/v1/tags").json() == []
