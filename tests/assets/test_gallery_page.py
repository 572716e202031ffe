"""The gallery page (/gallery, /p/<project>/gallery): views, the filter form, pages, htmx fragments, the
bulk bar with and without JavaScript, and (in headless Chromium) the lightbox and multi-select."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from assets.models import Asset
from projects.services import project_create
from tests.assets.test_gallery_api import BASE_TIME, make_asset, make_many

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def web(client: Client, owner: Any) -> Client:
    client.force_login(owner)
    return client


def tile_ids(html: str) -> list[str]:
    return re.findall(r'<li class="tile[^"]*" data-id="([0-9a-f-]+)"', html)


def test_the_gallery_needs_a_signed_in_user(client: Client) -> None:
    response = client.get("/gallery/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_gallery_shows_the_users_assets_newest_first_and_nobody_elses(web: Client, owner: Any, outsider: Any,
                                                                          project: Any) -> None:
    mine = make_many(owner, project, 3)
    make_asset(outsider, project_create(owner=outsider, name="Theirs"), name="secret.png")
    html = web.get("/gallery/").content.decode()
    assert tile_ids(html) == [str(a.pk) for a in reversed(mine)]
    assert "secret.png" not in html
    assert 'href="/gallery/"' in html  # the nav link in the header


@pytest.mark.parametrize("view", ["grid", "masonry", "list"])
def test_each_layout_renders_and_is_remembered_in_a_cookie(web: Client, owner: Any, project: Any, view: str) -> None:
    make_many(owner, project, 2)
    response = web.get("/gallery/", {"view": view})
    assert f'class="gallery gallery-{view}"' in response.content.decode()
    assert response.cookies["gallery_view"].value == view
    again = web.get("/gallery/").content.decode()  # no ?view=: the cookie decides
    assert f'class="gallery gallery-{view}"' in again


def test_the_filter_form_round_trips_every_value(web: Client, owner: Any, project: Any, catalog: None) -> None:
    make_asset(owner, project, name="fox.png", kind="video", tags=["sky", "night"], favourite=True, rating=4,
               prompt="a fox", model_id="local/sketch", provider="local", source="generation", width=1920, height=1080,
               created_at=BASE_TIME)
    params = {"q": "fox", "kind": "video", "source": "generation", "model": "local/sketch", "provider": "local",
              "favourite": "true", "rating_gte": "3", "created_after": "2025-01-01", "created_before": "2025-12-31",
              "aspect": "landscape", "sort": "rating", "tag": ["sky", "night"], "project": str(project.pk)}
    html = web.get("/gallery/", params).content.decode()
    for fragment in ['name="q" value="fox"', '<option value="video" selected>', '<option value="generation" selected>',
                     '<option value="local/sketch" selected>', '<option value="local" selected>',
                     'name="favourite" value="true" checked', '<option value="3" selected>',
                     'name="created_after" value="2025-01-01"', 'name="created_before" value="2025-12-31"',
                     '<option value="landscape" selected>', '<option value="rating" selected>',
                     '<input type="hidden" name="tag" value="sky">', '<input type="hidden" name="tag" value="night">',
                     f'<option value="{project.pk}" selected>', "<details class=\"filter-more\" open>"]:
        assert fragment in html, fragment
    # Each chip removes its own tag and keeps the rest of the query.
    assert re.search(r'href="/gallery/\?[^"]*tag=night[^"]*" aria-label="Remove the tag sky', html)
    assert "fox.png" in html


def test_a_bad_filter_value_is_shown_on_the_page_not_an_error_page(web: Client, owner: Any, project: Any) -> None:
    make_asset(owner, project)
    response = web.get("/gallery/", {"rating_gte": "9", "kind": "image"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "rating_gte:" in html and 'class="field has-error"' in html
    assert tile_ids(html) == []


def test_loading_the_page_counts_nothing(web: Client, owner: Any, project: Any, catalog: None) -> None:
    make_many(owner, project, 5, tags=["sky"])
    with CaptureQueriesContext(connection) as ctx:
        assert web.get("/gallery/", {"q": "asset", "tag": "sky"}).status_code == 200
    assert not [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    with CaptureQueriesContext(connection) as more:
        web.get("/gallery/", {"q": "asset", "tag": "sky"}, HTTP_HX_TARGET="gallery-items", **HTMX)
    assert not [q["sql"] for q in more.captured_queries if "COUNT(" in q["sql"].upper()]


def test_load_more_pages_on_without_javascript_and_with_htmx(web: Client, owner: Any, project: Any) -> None:
    assets = list(reversed(make_many(owner, project, 7)))
    html = web.get("/gallery/", {"page_size": 3}).content.decode()
    assert tile_ids(html) == [str(a.pk) for a in assets[:3]]
    next_url = re.search(r'<a class="button" href="([^"]+)" hx-get', html).group(1).replace("&amp;", "&")
    assert "page_size=3" in next_url and "cursor=" in next_url
    # Without JavaScript the link is the next page, with a way back.
    second = web.get(next_url).content.decode()
    assert tile_ids(second) == [str(a.pk) for a in assets[3:6]]
    assert 'rel="prev"' in second
    # htmx asks for the tiles alone, plus the next button out of band.
    fragment = web.get(next_url, HTTP_HX_TARGET="gallery-items", **HTMX).content.decode()
    assert "<html" not in fragment and "gallery-filters" not in fragment
    assert tile_ids(fragment) == [str(a.pk) for a in assets[3:6]]
    assert 'id="load-more" class="load-more" hx-swap-oob="true"' in fragment
    last_url = re.search(r'href="([^"]+)" hx-get', fragment).group(1).replace("&amp;", "&")
    last = web.get(last_url, HTTP_HX_TARGET="gallery-items", **HTMX).content.decode()
    assert tile_ids(last) == [str(assets[6].pk)]
    assert "data-load-more" not in last and "That is everything" in last


def test_the_filter_bar_gets_the_results_fragment_from_htmx(web: Client, owner: Any, project: Any) -> None:
    video = make_asset(owner, project, kind="video", mime="video/mp4")
    make_asset(owner, project)
    fragment = web.get("/gallery/", {"kind": "video"}, HTTP_HX_TARGET="gallery-results", **HTMX).content.decode()
    assert fragment.lstrip().startswith('<section id="gallery-results"')
    assert tile_ids(fragment) == [str(video.pk)]
    assert 'hx-get="/gallery/?kind=video"' in fragment  # reloads itself with the same filters after a bulk action


def test_a_filter_through_htmx_also_updates_the_links_above_the_results(web: Client, owner: Any,
                                                                       project: Any) -> None:
    """The layout links, tag chips and "Clear all filters" sit outside #gallery-results: they come back
    out of band, carrying the new query, and the tag box comes back empty for the next tag."""
    make_asset(owner, project)
    response = web.get("/gallery/", {"kind": "image", "tag": ["cat", "dog"]}, HTTP_HX_TARGET="gallery-results",
                       **HTMX)
    fragment = response.content.decode()
    views = re.search(r'<nav id="gallery-views"[^>]*hx-swap-oob="true"[^>]*>(.*?)</nav>', fragment, re.S)
    assert views and 'href="/gallery/?kind=image&amp;tag=cat&amp;tag=dog&amp;view=masonry"' in views.group(1)
    tags = re.search(r'<div id="gallery-tag-field"[^>]*hx-swap-oob="true"[^>]*>(.*?)</div>', fragment, re.S)
    assert tags and '<input type="hidden" name="tag" value="cat">' in tags.group(1)
    assert '<input type="hidden" name="tag" value="dog">' in tags.group(1)
    assert re.search(r'<input type="text" id="f-tag" name="tag"(?![^>]*value=)', tags.group(1))
    assert re.search(r'<p id="gallery-clear"[^>]*hx-swap-oob="true"[^>]*><a href="/gallery/">Clear all', fragment)
    # The same URL answers with the page or a fragment: caches must keep them apart.
    assert "HX-Target" in response["Vary"] and "HX-Request" in response["Vary"]


def test_tiles_show_thumbnails_when_ready_the_original_meanwhile_and_the_blurhash_colour(
        web: Client, owner: Any, project: Any) -> None:
    ready = make_asset(owner, project, name="ready.png", preview_status="ready", blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj",
                       thumb_small="previews/r-small.webp", thumb_large="previews/r-large.webp")
    pending = make_asset(owner, project, name="pending.png")
    audio = make_asset(owner, project, name="a.mp3", kind="audio", mime="audio/mpeg", preview_status="none",
                       width=None, height=None)
    html = web.get("/gallery/").content.decode()
    # The web app's preview route (no API rate limit for fifty tiles), versioned for caching.
    assert f'src="/previews/{ready.pk}/small?v=' in html
    assert f'data-full="/previews/{ready.pk}/large?v=' in html
    assert 'data-blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj"' in html and "background-color: #979695" in html
    assert f'src="/api/v1/assets/{pending.pk}/download?inline=1"' in html
    audio_tile = html[html.index(f'data-id="{audio.pk}"'):]
    assert 'data-full=""' in audio_tile[:800] and "🔊" in audio_tile[:2000]


def test_the_project_gallery_shows_one_project_and_is_404_to_an_outsider(client: Client, web: Client, owner: Any,
                                                                         outsider: Any, project: Any) -> None:
    inside = make_asset(owner, project)
    make_asset(owner, project_create(owner=owner, name="Other"))
    html = web.get(f"/p/{project.pk}/gallery").content.decode()
    assert tile_ids(html) == [str(inside.pk)]
    assert f'action="/p/{project.pk}/gallery"' in html
    client.force_login(outsider)
    assert client.get(f"/p/{project.pk}/gallery").status_code == 404
    assert client.get("/gallery/", {"project": str(project.pk)}).status_code == 404


def test_the_trash_view_lists_trashed_assets_with_restore(web: Client, owner: Any, project: Any) -> None:
    gone = make_asset(owner, project, deleted_at=timezone.now())
    make_asset(owner, project)
    html = web.get("/gallery/", {"trashed": "true"}).content.decode()
    assert tile_ids(html) == [str(gone.pk)]
    assert 'value="restore"' in html and 'value="trash"' not in html


# --- the bulk bar ---------------------------------------------------------------------------------------

def test_a_bulk_action_without_javascript_redirects_back_with_a_message(web: Client, owner: Any, project: Any) -> None:
    assets = make_many(owner, project, 3)
    back = "/gallery/?kind=image&view=list"
    response = web.post("/gallery/bulk", {"assets": [str(a.pk) for a in assets[:2]], "action": "favourite",
                                          "next": back})
    assert response.status_code == 302 and response["Location"] == back
    assert set(Asset.objects.filter(favourite=True).values_list("pk", flat=True)) == {a.pk for a in assets[:2]}
    assert "Added 2 assets to favourites." in web.get(back).content.decode()


def test_bulk_move_tag_rate_and_trash(web: Client, owner: Any, project: Any) -> None:
    assets = make_many(owner, project, 2)
    target = project_create(owner=owner, name="Finals")
    chosen = [str(a.pk) for a in assets]
    web.post("/gallery/bulk", {"assets": chosen, "action": "tag", "tags": "keep, hero"})
    web.post("/gallery/bulk", {"assets": chosen, "action": "rate", "rating": "4"})
    response = web.post("/gallery/bulk", {"assets": chosen, "action": "move", "project": str(target.pk)}, follow=True)
    assert "Moved 2 assets to Finals." in response.content.decode()
    for asset in Asset.objects.all():
        assert (asset.project_id, asset.rating) == (target.pk, 4)
        assert sorted(asset.tags.values_list("name", flat=True)) == ["hero", "keep"]
    web.post("/gallery/bulk", {"assets": chosen, "action": "trash"})
    assert Asset.objects.filter(deleted_at__isnull=False).count() == 2


def test_a_failed_bulk_action_without_javascript_keeps_the_selection_and_changes_nothing(
        web: Client, owner: Any, outsider: Any, project: Any) -> None:
    mine = make_many(owner, project, 2)
    theirs = make_asset(outsider, project_create(owner=outsider, name="Theirs"))
    response = web.post("/gallery/bulk", {"assets": [str(mine[0].pk), str(theirs.pk)], "action": "trash",
                                          "next": "/gallery/?view=grid"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "nothing was changed" in html
    assert re.search(rf'value="{mine[0].pk}" form="bulk-form" checked', html)
    assert not re.search(rf'value="{mine[1].pk}" form="bulk-form" checked', html)
    assert not Asset.objects.filter(deleted_at__isnull=False).exists()
    nothing = web.post("/gallery/bulk", {"action": "favourite"}).content.decode()
    assert "Select at least one asset first." in nothing


def test_bulk_with_htmx_answers_with_the_status_line_and_reloads_the_results_on_success(
        web: Client, owner: Any, project: Any) -> None:
    asset = make_asset(owner, project)
    done = web.post("/gallery/bulk", {"assets": [str(asset.pk)], "action": "favourite"}, **HTMX)
    assert done.status_code == 200 and done["HX-Trigger"] == "gallery-changed"
    assert done.content.decode().lstrip().startswith('<div id="bulk-status"')
    failed = web.post("/gallery/bulk", {"assets": [str(asset.pk)], "action": "move", "project": "nope"}, **HTMX)
    assert failed.status_code == 200 and "HX-Trigger" not in failed
    assert "alert-error" in failed.content.decode()


def test_download_posts_the_selection_to_the_export(web: Client, owner: Any, project: Any) -> None:
    make_asset(owner, project)
    html = web.get("/gallery/").content.decode()
    assert 'value="download" class="small" formaction="/export" data-bulk-download' in html


def test_bulk_never_redirects_off_site(web: Client, owner: Any, project: Any) -> None:
    asset = make_asset(owner, project)
    response = web.post("/gallery/bulk", {"assets": [str(asset.pk)], "action": "favourite",
                                          "next": "https://evil.example/gallery/"})
    assert response["Location"] == "/gallery/"


def test_bulk_needs_the_csrf_token(owner: Any, project: Any) -> None:
    asset = make_asset(owner, project)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    assert strict.post("/gallery/bulk", {"assets": [str(asset.pk)], "action": "trash"}).status_code == 403
    assert Asset.objects.get().deleted_at is None


# --- in a browser ---------------------------------------------------------------------------------------



def _png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_in_a_browser_the_lightbox_steps_zooms_and_closes_and_selection_takes_ranges(
        transactional_db: Any, live_server: Any, browser: Any, owner: Any, project: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from assets.services import asset_create_from_bytes

    for i in range(11):
        asset_create_from_bytes(project=project, data=_png((20 * i, 200 - 15 * i, 90)), name=f"swatch-{i}.png")
    session = Client()
    session.force_login(owner)
    wait = WebDriverWait(browser, 20)
    browser.get(f"{live_server.url}/gallery/")
    browser.add_cookie({"name": "sessionid", "value": session.cookies["sessionid"].value})
    # A phone's screen: one page fills it, so the next page waits below the fold.
    browser.get(f"{live_server.url}/gallery/?page_size=9")
    wait.until(lambda d: d.execute_script("return document.documentElement.classList.contains('gallery-js')"))
    tiles = browser.find_elements(By.CSS_SELECTOR, "#gallery-items > .tile")
    assert [t.get_attribute("data-name") for t in tiles] == [f"swatch-{i}.png" for i in range(10, 1, -1)]

    # The lightbox: open on a click, step with the arrow keys (past the page's end it loads the next
    # page), zoom with a double-click, close with Esc.
    tiles[0].find_element(By.CSS_SELECTOR, ".tile-link").click()
    box = browser.find_element(By.ID, "lightbox")
    wait.until(lambda d: box.get_attribute("open") is not None)
    assert browser.current_url.endswith("/gallery/?page_size=9")
    name = box.find_element(By.CSS_SELECTOR, "[data-lb-name]")
    assert name.text == "swatch-10.png"
    image = box.find_element(By.CSS_SELECTOR, "[data-lb-img]")
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 64)
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    assert name.text == "swatch-9.png"
    for _ in range(8):
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    wait.until(lambda d: name.text == "swatch-1.png")  # the tenth: fetched by "Load more"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gallery-items > .tile")) == 11
    ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
    assert name.text == "swatch-2.png"
    ActionChains(browser).double_click(image).perform()
    assert box.find_element(By.CSS_SELECTOR, "[data-lb-zoom]").text == "250%"
    assert "scale(2.5)" in image.get_attribute("style")
    ActionChains(browser).send_keys("0").perform()
    assert box.find_element(By.CSS_SELECTOR, "[data-lb-zoom]").text == "100%"
    # Clicking › onto the last asset disables the button it was pressed with; the keys still work.
    next_button = box.find_element(By.CSS_SELECTOR, "[data-lb-next]")
    next_button.click()
    next_button.click()
    assert name.text == "swatch-0.png" and not next_button.is_enabled()
    ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
    assert name.text == "swatch-1.png"
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    wait.until(lambda d: box.get_attribute("open") is None)

    # Selection: a click, then a shift-click selects the range between; the bar counts them.
    browser.execute_script("window.scrollTo(0, 0)")
    assert not browser.find_element(By.CSS_SELECTOR, "[data-select-none]").is_displayed()  # nothing to clear
    boxes = browser.find_elements(By.CSS_SELECTOR, "input.tile-select")
    ActionChains(browser).move_to_element(boxes[0]).click().perform()
    ActionChains(browser).move_to_element(boxes[3]).key_down(Keys.SHIFT).click().key_up(Keys.SHIFT).perform()
    count = browser.find_element(By.CSS_SELECTOR, "[data-bulk-count]")
    assert [b.is_selected() for b in boxes] == [True] * 4 + [False] * 7
    assert count.text == "4 selected"
    browser.find_element(By.CSS_SELECTOR, "[data-select-all]").click()
    assert count.text == "11 selected"

    # A bulk action through htmx: the status line says so, and the results reload with the change.
    favourite = browser.find_element(By.CSS_SELECTOR, "button[value=favourite]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", favourite)
    favourite.click()
    wait.until(lambda d: "Added 11 assets to favourites." in d.execute_script(
        "return document.getElementById('bulk-status').textContent"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".tile.is-favourite")) >= 6)
    assert Asset.objects.filter(favourite=True).count() == 11
    assert count.text == "Select assets to act on them"

    # Enter in the tag box tags the selection (it is not the Favourite button's form submission).
    browser.find_element(By.CSS_SELECTOR, "[data-select-all]").click()
    tag_box = browser.find_element(By.ID, "bulk-tags")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", tag_box)
    tag_box.send_keys("hero", Keys.ENTER)
    wait.until(lambda d: "Tagged 11 assets." in d.execute_script(
        "return document.getElementById('bulk-status').textContent"))
    assert Asset.objects.filter(tags__name="hero").count() == 11
