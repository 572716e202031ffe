"""Search (`q`) over names, prompts, notes and tags, and the indexes the gallery's queries use.

The behaviour tests run on both databases (PostgreSQL full-text search in the PostgreSQL leg, the
substring fallback on SQLite); the `postgres` ones pin PostgreSQL's own semantics and its GIN index."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from assets.library.gallery import search_terms
from assets.library.organise import asset_update
from assets.library.selectors import asset_gallery_for_user
from assets.models import Asset
from tests.assets.test_gallery_api import ids, make_asset, make_many

on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite fallback's own semantics")


@pytest.fixture
def library(owner: Any, project: Any) -> dict[str, Any]:
    return {
        "by_prompt": make_asset(owner, project, name="render.png", prompt="A lighthouse at dusk, oil painting"),
        "by_name": make_asset(owner, project, name="Lighthouse Study.png"),
        "by_tag": make_asset(owner, project, name="scan.png", tags=["lighthouse", "coast"]),
        "by_notes": make_asset(owner, project, name="ref.png", notes="Client liked the lighthouse version"),
        "unrelated": make_asset(owner, project, name="forest.png", prompt="a quiet forest", tags=["green"]),
    }


def found(api: APIClient, q: str, **params: Any) -> set[str]:
    return set(ids(api.get("/api/v1/assets", {"q": q, **params})))


def keys(library: dict[str, Any], *names: str) -> set[str]:
    return {str(library[n].pk) for n in names}


def test_search_finds_assets_by_prompt_name_tag_and_notes(owner_api: APIClient, library: dict[str, Any]) -> None:
    assert found(owner_api, "lighthouse") == keys(library, "by_prompt", "by_name", "by_tag", "by_notes")
    assert found(owner_api, "LIGHTHOUSE") == keys(library, "by_prompt", "by_name", "by_tag", "by_notes")
    assert found(owner_api, "dusk") == keys(library, "by_prompt")
    assert found(owner_api, "study") == keys(library, "by_name")
    assert found(owner_api, "coast") == keys(library, "by_tag")
    assert found(owner_api, "client") == keys(library, "by_notes")
    assert found(owner_api, "submarine") == set()


def test_every_word_must_match_unless_joined_by_or(owner_api: APIClient, library: dict[str, Any]) -> None:
    assert found(owner_api, "lighthouse dusk") == keys(library, "by_prompt")
    assert found(owner_api, "dusk or forest") == keys(library, "by_prompt", "unrelated")
    assert found(owner_api, "lighthouse -coast -client") == keys(library, "by_prompt", "by_name")
    assert found(owner_api, '"quiet forest"') == keys(library, "unrelated")
    assert found(owner_api, '"forest quiet"') == set()


def test_a_query_with_nothing_to_search_lists_everything(owner_api: APIClient, library: dict[str, Any]) -> None:
    assert len(found(owner_api, '  " - ')) == len(library)


def test_search_follows_renames_notes_and_tags_as_they_change(owner_api: APIClient, owner: Any, project: Any) -> None:
    asset = make_asset(owner, project, name="untitled.png")
    assert found(owner_api, "harbour") == set()
    asset_update(user=owner, asset_id=asset.pk, name="Harbour at night")
    assert found(owner_api, "harbour") == {str(asset.pk)}
    asset_update(user=owner, asset_id=asset.pk, tags=["moodboard"], notes="for the pitch deck")
    assert found(owner_api, "moodboard pitch") == {str(asset.pk)}
    asset_update(user=owner, asset_id=asset.pk, tags=[])
    assert found(owner_api, "moodboard") == set()


def test_search_combines_with_filters_the_trash_and_pages(owner_api: APIClient, owner: Any, project: Any) -> None:
    matching = make_many(owner, project, 7, prompt="neon city at night")
    make_many(owner, project, 3, prompt="neon city at night", kind="video", mime="video/mp4")
    make_many(owner, project, 4, prompt="a field of wheat")
    trashed = make_asset(owner, project, prompt="neon sign", deleted_at=timezone.now())
    seen: list[str] = []
    response = owner_api.get("/api/v1/assets", {"q": "neon night", "kind": "image", "page_size": 3})
    while True:
        seen += ids(response)
        if not response.json()["next"]:
            break
        response = owner_api.get(response.json()["next"])
    assert sorted(seen) == sorted(str(a.pk) for a in matching)
    assert found(owner_api, "neon", trashed="true") == {str(trashed.pk)}


def test_an_outsiders_search_finds_nothing_of_the_owners(outsider_api: APIClient, library: dict[str, Any]) -> None:
    assert found(outsider_api, "lighthouse") == set()


def test_search_terms_read_the_query_as_web_search_does() -> None:
    assert search_terms('red "old car" -blue or green') == [[(False, "red"), (False, "old car"), (True, "blue")],
                                                           [(False, "green")]]
    assert search_terms("-") == [[(False, "-")]]
    assert search_terms("or or") == []


@on_sqlite
def test_the_sqlite_fallback_matches_parts_of_words(owner_api: APIClient, owner: Any, project: Any) -> None:
    asset = make_asset(owner, project, name="IMG_1234.png", prompt="sunsets over water")
    assert found(owner_api, "sun") == {str(asset.pk)}
    assert found(owner_api, "IMG_12") == {str(asset.pk)}


@pytest.mark.postgres
def test_postgres_matches_whole_words_and_file_names_in_parts(owner_api: APIClient, owner: Any, project: Any) -> None:
    photo = make_asset(owner, project, name="IMG_1234.png", prompt="sunsets over water")
    shot = make_asset(owner, project, name="refs/shot.v2.jpg")
    assert found(owner_api, "sun") == set()  # whole words, no stemming ('simple')
    assert found(owner_api, "sunsets") == {str(photo.pk)}
    assert found(owner_api, "IMG_1234") == {str(photo.pk)}
    assert found(owner_api, "img_1234.png") == {str(photo.pk)}
    assert found(owner_api, "shot") == {str(shot.pk)}


# --- the indexes the queries use ------------------------------------------------------------------------------

def _page_sql(owner: Any, params: dict[str, Any]) -> str:
    """The SQL of the page query the gallery runs for `params` (not the tags' prefetch)."""
    with CaptureQueriesContext(connection) as ctx:
        asset_gallery_for_user(owner, params)
    return next(q["sql"] for q in ctx.captured_queries if 'FROM "assets_asset"' in q["sql"])


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A test table is tiny and a sequential scan always wins on cost; turning it off asks
            # whether the index CAN serve the query, which is what an expression or partial index
            # that does not match its query would fail.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}")
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())


def _bulk(owner: Any, project: Any, n: int, **fields: Any) -> None:
    """n more rows like one made by the services, a minute apart, with varied ratings; then fresh
    statistics, so the planner chooses as it would on a real table rather than on an empty one."""
    template = make_asset(owner, project, prompt="a common prompt", **fields)
    rows = []
    for i in range(n):
        template.pk, template._state.adding = uuid.uuid4(), True
        template.created_at = template.created_at - timedelta(minutes=1)
        template.rating = [None, 1, 2, 3, 4, 5][i % 6]
        template.search_text = f"common prompt {i}"
        rows.append(copy.copy(template))
    Asset.objects.bulk_create(rows, batch_size=500)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE assets_asset" if connection.vendor == "postgresql" else "ANALYZE")


@pytest.mark.parametrize(("params", "index"), [
    ({}, "assets_live_owner_recent"),
    ({"sort": "oldest"}, "assets_live_owner_recent"),
    ({"sort": "rating"}, "assets_live_owner_rating"),
    ({"trashed": "true"}, "assets_trash_owner_recent"),
])
def test_a_deep_page_seeks_the_index_that_follows_its_sort(owner: Any, project: Any, params: dict[str, Any],
                                                           index: str) -> None:
    _bulk(owner, project, 2000)
    _bulk(owner, project, 200, deleted_at=timezone.now())
    first = asset_gallery_for_user(owner, {**params, "page_size": 20})
    plan = _plan(_page_sql(owner, {**params, "page_size": 20, "cursor": first.next_cursor}))
    assert index in plan, plan
    if connection.vendor == "postgresql":
        # The cursor is an index bound (a seek), not a filter applied row by row, and nothing is sorted.
        assert "Index Cond" in plan and "created_at" in plan.split("Index Cond")[1], plan
        assert "Sort" not in plan, plan
    else:
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan


@pytest.mark.postgres
def test_postgres_search_uses_the_gin_index(owner: Any, project: Any) -> None:
    # With enough rows and statistics the planner prefers the GIN index for a rare word over walking
    # the owner's index and testing every row: which it can only do if the query's expression is
    # exactly the index's.
    _bulk(owner, project, 2000)
    make_asset(owner, project, prompt="a lonely lighthouse")
    plan = _plan(_page_sql(owner, {"q": "lighthouse"}))
    assert "assets_live_search" in plan, plan
