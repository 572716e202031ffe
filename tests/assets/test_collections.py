"""Collections: ordered sets of a user's assets, through the services, the API and the web pages."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from assets.library.collections import (
    collection_assets,
    collection_create,
    collection_item_move,
    collection_items_add,
    collection_items_remove,
    collection_list_with_stats_for_user,
    collection_reorder,
)
from assets.library.organise import asset_restore, asset_trash, assets_purge_trash
from assets.models import Asset, Collection, CollectionItem
from assets.services import asset_create_from_bytes
from core.errors import Conflict, InvalidRequest
from projects.services import project_create
from tests.conftest import headless_chromium

pytestmark = pytest.mark.django_db


def png(colour: tuple[int, int, int] = (200, 40, 90), size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def image(project: Any, name: str, colour: tuple[int, int, int] = (200, 40, 90)) -> Asset:
    return asset_create_from_bytes(project=project, data=png(colour), name=name)


def names(collection: Collection) -> list[str]:
    return [a.name for a in collection_assets(collection)]


def stored_positions(collection: Collection) -> list[int]:
    return list(CollectionItem.objects.filter(collection=collection).order_by("position").values_list("position", flat=True))


@pytest.fixture
def five(project: Any) -> list[Asset]:
    return [image(project, f"{letter}.png", (i * 40, 10, 10)) for i, letter in enumerate("abcde")]


@pytest.fixture
def filled(owner: Any, five: list[Asset]) -> Collection:
    collection = collection_create(user=owner, name="Selects")
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[a.pk for a in five])
    return collection


# --- services -------------------------------------------------------------------------------------------------

def test_items_keep_the_order_they_were_added_in_and_adding_twice_changes_nothing(
        owner: Any, filled: Collection, five: list[Asset]) -> None:
    assert names(filled) == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    assert collection_items_add(user=owner, collection_id=filled.pk, asset_ids=[five[0].pk, five[0].pk]) == 0
    assert stored_positions(filled) == [0, 1, 2, 3, 4]


def test_adding_after_a_purge_left_gaps_still_adds_at_the_end(owner: Any, project: Any, filled: Collection,
                                                             five: list[Asset],
                                                             django_capture_on_commit_callbacks: Any) -> None:
    for asset in five[1:3]:
        asset_trash(user=owner, asset_id=asset.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assets_purge_trash(now=timezone.now() + timedelta(days=40))
    assert stored_positions(filled) == [0, 3, 4]  # the purge leaves gaps
    late = image(project, "f.png")
    collection_items_add(user=owner, collection_id=filled.pk, asset_ids=[late.pk])
    assert names(filled) == ["a.png", "d.png", "e.png", "f.png"]


def test_adding_at_a_position_inserts_there_and_positions_stay_dense(owner: Any, project: Any, filled: Collection) -> None:
    new = [image(project, "x.png"), image(project, "y.png")]
    assert collection_items_add(user=owner, collection_id=filled.pk, asset_ids=[a.pk for a in new], position=1) == 2
    assert names(filled) == ["a.png", "x.png", "y.png", "b.png", "c.png", "d.png", "e.png"]
    assert stored_positions(filled) == list(range(7))


def test_reorder_takes_the_full_order_and_a_stale_order_is_a_conflict_that_changes_nothing(
        owner: Any, filled: Collection, five: list[Asset]) -> None:
    a, b, c, d, e = (x.pk for x in five)
    collection_reorder(user=owner, collection_id=filled.pk, asset_ids=[e, d, c, b, a])
    assert names(filled) == ["e.png", "d.png", "c.png", "b.png", "a.png"]
    with pytest.raises(Conflict) as stale:
        collection_reorder(user=owner, collection_id=filled.pk, asset_ids=[a, b, c, d])  # one missing
    assert stale.value.http_status == 409 and "1 missing" in stale.value.message
    with pytest.raises(InvalidRequest):
        collection_reorder(user=owner, collection_id=filled.pk, asset_ids=[a, a, b, c, d, e])
    assert names(filled) == ["e.png", "d.png", "c.png", "b.png", "a.png"]
    assert stored_positions(filled) == [0, 1, 2, 3, 4]


def test_moving_one_item_up_down_and_past_the_end(owner: Any, filled: Collection, five: list[Asset]) -> None:
    a, b, c, d, e = (x.pk for x in five)
    assert collection_item_move(user=owner, collection_id=filled.pk, asset_id=d, position=0) == 0
    assert names(filled) == ["d.png", "a.png", "b.png", "c.png", "e.png"]
    assert collection_item_move(user=owner, collection_id=filled.pk, asset_id=d, position=99) == 4
    assert names(filled) == ["a.png", "b.png", "c.png", "e.png", "d.png"]
    with pytest.raises(InvalidRequest):
        collection_item_move(user=owner, collection_id=filled.pk, asset_id=d, position=-1)
    assert stored_positions(filled) == [0, 1, 2, 3, 4]


def test_a_trashed_asset_is_hidden_keeps_its_slot_and_comes_back_where_it_was(
        owner: Any, filled: Collection, five: list[Asset]) -> None:
    a, b, c, d, e = (x.pk for x in five)
    asset_trash(user=owner, asset_id=b)
    assert names(filled) == ["a.png", "c.png", "d.png", "e.png"]
    assert collection_list_with_stats_for_user(owner).get(pk=filled.pk).item_count == 4
    # Reordering names only the visible items; the trashed one keeps its slot.
    collection_reorder(user=owner, collection_id=filled.pk, asset_ids=[e, d, c, a])
    assert names(filled) == ["e.png", "d.png", "c.png", "a.png"]
    asset_restore(user=owner, asset_id=b)
    assert names(filled) == ["e.png", "b.png", "d.png", "c.png", "a.png"]
    assert stored_positions(filled) == [0, 1, 2, 3, 4]


def test_a_purge_leaves_a_gap_that_the_next_write_closes(owner: Any, filled: Collection, five: list[Asset]) -> None:
    asset_trash(user=owner, asset_id=five[1].pk)
    Asset.objects.filter(pk=five[1].pk).update(deleted_at=timezone.now() - timedelta(days=31))
    assert assets_purge_trash() == 1
    assert stored_positions(filled) == [0, 2, 3, 4]
    assert names(filled) == ["a.png", "c.png", "d.png", "e.png"]
    collection_item_move(user=owner, collection_id=filled.pk, asset_id=five[4].pk, position=0)
    assert stored_positions(filled) == [0, 1, 2, 3]
    assert names(filled) == ["e.png", "a.png", "c.png", "d.png"]


def test_removing_items_keeps_the_assets_and_renumbers(owner: Any, filled: Collection, five: list[Asset]) -> None:
    assert collection_items_remove(user=owner, collection_id=filled.pk, asset_ids=[five[0].pk, five[2].pk]) == 2
    assert names(filled) == ["b.png", "d.png", "e.png"]
    assert stored_positions(filled) == [0, 1, 2]
    assert Asset.objects.filter(pk__in=[five[0].pk, five[2].pk]).count() == 2


def test_someone_elses_asset_cannot_be_added_and_nothing_is(owner: Any, outsider: Any, filled: Collection,
                                                            project: Any) -> None:
    theirs = image(project_create(owner=outsider, name="Theirs"), "theirs.png")
    mine = image(project, "mine.png")
    with pytest.raises(Http404):
        collection_items_add(user=owner, collection_id=filled.pk, asset_ids=[mine.pk, theirs.pk])
    assert len(names(filled)) == 5
    with pytest.raises(Http404):  # and the outsider cannot touch the owner's collection
        collection_items_add(user=outsider, collection_id=filled.pk, asset_ids=[theirs.pk])


def test_a_collection_can_be_tied_only_to_ones_own_project(owner: Any, outsider: Any, project: Any) -> None:
    assert collection_create(user=owner, name="  Board   one ", project_id=project.pk).name == "Board one"
    with pytest.raises(Http404):
        collection_create(user=owner, name="X", project_id=project_create(owner=outsider, name="Theirs").pk)
    with pytest.raises(InvalidRequest):
        collection_create(user=owner, name="   ")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_adds_and_moves_keep_positions_dense(owner: Any, project: Any) -> None:
    """Eight threads add and move at once; the collection row lock serialises them."""
    collection = collection_create(user=owner, name="Race")
    assets = [image(project, f"{n}.png", (n * 20, 0, 0)) for n in range(8)]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[assets[n].pk])
            collection_item_move(user=owner, collection_id=collection.pk, asset_id=assets[n].pk, position=0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert stored_positions(collection) == list(range(8))
    assert sorted(names(collection)) == sorted(a.name for a in assets)


# --- API ------------------------------------------------------------------------------------------------------

def test_the_api_creates_lists_adds_reorders_removes_and_deletes(owner_api: Any, owner: Any, project: Any,
                                                                five: list[Asset]) -> None:
    created = owner_api.post("/api/v1/collections", {"name": "Storyboard", "project": str(project.pk)}, format="json")
    assert created.status_code == 201, created.content
    cid = created.json()["id"]
    assert created.json()["items"] == [] and created.json()["project"] == str(project.pk)

    ids = [str(a.pk) for a in five]
    added = owner_api.post(f"/api/v1/collections/{cid}/items", {"assets": ids[:3]}, format="json")
    assert added.status_code == 200
    assert [i["id"] for i in added.json()["items"]] == ids[:3]
    assert [i["position"] for i in added.json()["items"]] == [0, 1, 2]

    inserted = owner_api.post(f"/api/v1/collections/{cid}/items", {"assets": ids[3:], "position": 0}, format="json")
    assert [i["id"] for i in inserted.json()["items"]] == [ids[3], ids[4], ids[0], ids[1], ids[2]]

    moved = owner_api.post(f"/api/v1/collections/{cid}/reorder", {"asset": ids[2], "position": 0}, format="json")
    assert [i["id"] for i in moved.json()["items"]][:2] == [ids[2], ids[3]]

    whole = owner_api.post(f"/api/v1/collections/{cid}/reorder", {"assets": ids}, format="json")
    assert [i["id"] for i in whole.json()["items"]] == ids

    stale = owner_api.post(f"/api/v1/collections/{cid}/reorder", {"assets": ids[:4]}, format="json")
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_order"

    both = owner_api.post(f"/api/v1/collections/{cid}/reorder", {"assets": ids, "asset": ids[0], "position": 1},
                          format="json")
    assert both.status_code == 400

    removed = owner_api.delete(f"/api/v1/collections/{cid}/items", {"assets": ids[:2]}, format="json")
    assert [i["id"] for i in removed.json()["items"]] == ids[2:]
    one = owner_api.delete(f"/api/v1/collections/{cid}/items/{ids[2]}")
    assert [i["id"] for i in one.json()["items"]] == ids[3:]

    renamed = owner_api.patch(f"/api/v1/collections/{cid}", {"name": "Board", "project": None}, format="json")
    assert renamed.json()["name"] == "Board" and renamed.json()["project"] is None

    listed = owner_api.get("/api/v1/collections")
    assert [(c["name"], c["item_count"]) for c in listed.json()["results"]] == [("Board", 2)]

    assert owner_api.delete(f"/api/v1/collections/{cid}").status_code == 204
    assert not Collection.objects.exists() and Asset.objects.count() == 5


def test_bad_input_is_a_clear_400(owner_api: Any, filled: Collection) -> None:
    assert owner_api.post("/api/v1/collections", {"name": ""}, format="json").status_code == 400
    bad = owner_api.post(f"/api/v1/collections/{filled.pk}/items", {"assets": ["not-a-uuid"]}, format="json")
    assert bad.status_code == 400 and "assets" in bad.json()["error"]["fields"]
    neg = owner_api.post(f"/api/v1/collections/{filled.pk}/reorder",
                         {"asset": str(filled.items.first().asset_id), "position": -2}, format="json")
    assert neg.status_code == 400


def test_the_collection_list_costs_the_same_queries_for_one_or_many(owner_api: Any, owner: Any, project: Any) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert owner_api.get("/api/v1/collections").status_code == 200
        return len(ctx.captured_queries)

    asset = image(project, "cover.png")
    collection = collection_create(user=owner, name="One")
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[asset.pk])
    queries()  # the first call also caches the user's plan for the throttle
    one = queries()
    for n in range(6):
        more = collection_create(user=owner, name=f"More {n}")
        collection_items_add(user=owner, collection_id=more.pk, asset_ids=[asset.pk])
    assert queries() == one
    body = owner_api.get("/api/v1/collections").json()["results"]
    assert all(c["item_count"] == 1 and c["cover"] == str(asset.pk) for c in body)


def test_the_detail_costs_the_same_queries_for_few_or_many_items(owner_api: Any, owner: Any, project: Any) -> None:
    collection = collection_create(user=owner, name="Grows")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert owner_api.get(f"/api/v1/collections/{collection.pk}").status_code == 200
        return len(ctx.captured_queries)

    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[image(project, "1.png").pk])
    queries()  # the first call also caches the user's plan for the throttle
    few = queries()
    collection_items_add(user=owner, collection_id=collection.pk,
                         asset_ids=[image(project, f"{n}.png", (n, n, n)).pk for n in range(2, 9)])
    assert queries() == few


# --- web ------------------------------------------------------------------------------------------------------

def test_the_collections_page_lists_mine_and_creates_one(signed_in: Any, owner: Any, outsider: Any,
                                                         filled: Collection) -> None:
    collection_create(user=outsider, name="Their secret board")
    page = signed_in.get(reverse("studio:collections"))
    assert page.status_code == 200 and "Selects" in page.text and "Their secret board" not in page.text
    assert "5 assets" in page.text
    created = signed_in.post(reverse("studio:collections"), {"name": "Moodboard", "description": "", "project": ""})
    new = Collection.objects.get(owner=owner, name="Moodboard")
    assert created.status_code == 302 and created["Location"] == reverse("studio:collection", args=[new.pk])
    refused = signed_in.post(reverse("studio:collections"), {"name": ""})
    assert refused.status_code == 400


def test_the_collection_page_shows_items_in_order_with_move_buttons(signed_in: Any, filled: Collection,
                                                                    five: list[Asset]) -> None:
    page = signed_in.get(reverse("studio:collection", args=[filled.pk]))
    assert page.status_code == 200
    html = page.text
    order = [html.index(f'data-asset="{a.pk}"') for a in five]
    assert order == sorted(order)
    assert 'aria-label="Move a.png up" disabled' in html and 'aria-label="Move e.png down" disabled' in html
    assert "studio/collections.js" in html and 'draggable="true"' in html


def test_the_move_buttons_work_without_javascript(signed_in: Any, filled: Collection, five: list[Asset]) -> None:
    response = signed_in.post(reverse("studio:collection-move", args=[filled.pk]),
                              {"asset": str(five[2].pk), "position": "1"})
    assert response.status_code == 302 and response["Location"].endswith("#items")
    assert names(filled) == ["a.png", "c.png", "b.png", "d.png", "e.png"]


def test_drag_and_drop_posts_the_whole_order_and_gets_the_list_back(signed_in: Any, filled: Collection,
                                                                    five: list[Asset]) -> None:
    order = [str(a.pk) for a in reversed(five)]
    response = signed_in.post(reverse("studio:collection-reorder", args=[filled.pk]), {"assets": order},
                              HTTP_X_REQUESTED_WITH="fetch")
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="collection-items"') and 'data-note="Order saved."' in response.text
    assert names(filled) == ["e.png", "d.png", "c.png", "b.png", "a.png"]
    stale = signed_in.post(reverse("studio:collection-reorder", args=[filled.pk]), {"assets": order[:2]},
                           HTTP_X_REQUESTED_WITH="fetch")
    assert stale.status_code == 409 and "alert-error" in stale.text
    assert names(filled) == ["e.png", "d.png", "c.png", "b.png", "a.png"]


def test_adding_from_the_asset_page_to_an_existing_or_a_new_collection(signed_in: Any, owner: Any, project: Any,
                                                                       filled: Collection) -> None:
    asset = image(project, "new.png")
    page = signed_in.get(reverse("studio:asset", args=[asset.pk]))
    assert f'<option value="{filled.pk}">Selects</option>' in page.text
    response = signed_in.post(reverse("studio:collection-add"), {"asset": str(asset.pk), "collection": str(filled.pk)})
    assert response.status_code == 302 and names(filled)[-1] == "new.png"
    signed_in.post(reverse("studio:collection-add"), {"asset": str(asset.pk), "new_name": "Hero frames"})
    fresh = Collection.objects.get(owner=owner, name="Hero frames")
    assert names(fresh) == ["new.png"] and fresh.project_id == project.pk
    page = signed_in.get(reverse("studio:asset", args=[asset.pk]))
    assert "Hero frames</a>" in page.text and "Selects</a>" in page.text


def test_deleting_a_collection_needs_the_confirmation_and_keeps_the_assets(signed_in: Any, filled: Collection) -> None:
    signed_in.post(reverse("studio:collection-delete", args=[filled.pk]))
    assert Collection.objects.filter(pk=filled.pk).exists()
    signed_in.post(reverse("studio:collection-delete", args=[filled.pk]), {"confirm": "yes"})
    assert not Collection.objects.filter(pk=filled.pk).exists() and Asset.objects.count() == 5


# --- in a browser ---------------------------------------------------------------------------------------------

DRAG = """
const [source, target] = arguments;
const data = new DataTransfer();
const rect = target.getBoundingClientRect();
const at = {bubbles: true, cancelable: true, dataTransfer: data, clientX: rect.left + 2, clientY: rect.top + 5};
source.dispatchEvent(new DragEvent("dragstart", at));
target.dispatchEvent(new DragEvent("dragover", at));
target.dispatchEvent(new DragEvent("drop", at));
source.dispatchEvent(new DragEvent("dragend", at));
"""


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_in_a_browser_the_keyboard_buttons_and_drag_and_drop_reorder(live_server: Any, owner: Any, project: Any,
                                                                     tmp_path: Any) -> None:
    from django.test import Client
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    collection = collection_create(user=owner, name="Board")
    assets = [image(project, f"{n}.png", (i * 60, 20, 20)) for i, n in enumerate("abc")]
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[a.pk for a in assets])
    session = Client()
    session.force_login(owner)

    browser = headless_chromium(tmp_path / "chrome", window="1200,900")
    try:
        browser.get(f"{live_server.url}/static/studio/collections.js")
        browser.add_cookie({"name": "sessionid", "value": session.cookies["sessionid"].value, "path": "/"})
        browser.get(f"{live_server.url}{reverse('studio:collection', args=[collection.pk])}")
        wait = WebDriverWait(browser, 30)

        def shown() -> list[str]:
            return browser.execute_script(
                "return Array.from(document.querySelectorAll('.collection-item'), li => li.dataset.name)")

        assert shown() == ["a.png", "b.png", "c.png"]
        # Keyboard: focus "move b up" and press Enter; the list is swapped in place, focus stays on b.
        browser.find_element(By.CSS_SELECTOR, 'button[aria-label="Move b.png up"]').send_keys(Keys.ENTER)
        wait.until(lambda _: shown() == ["b.png", "a.png", "c.png"])
        focused = browser.switch_to.active_element.get_attribute("aria-label")
        assert focused == "Move b.png down"  # "up" is disabled at the top, so focus moved to "down"
        assert names(collection) == ["b.png", "a.png", "c.png"]
        wait.until(lambda _: browser.find_element(By.ID, "collection-status").text == "Moved to position 1.")

        # Drag c onto the left half of the first item: it goes first, and the whole order is saved.
        items = browser.find_elements(By.CSS_SELECTOR, ".collection-item")
        browser.execute_script(DRAG, items[2], items[0])
        wait.until(lambda _: browser.find_element(By.ID, "collection-status").text == "Order saved.")
        assert shown() == ["c.png", "b.png", "a.png"]
        assert names(collection) == ["c.png", "b.png", "a.png"]
    finally:
        browser.quit()
