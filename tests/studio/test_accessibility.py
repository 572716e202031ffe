"""Pages a person sees, checked in a real browser: axe-core (vendored, tests/vendor/axe-core) finds no
WCAG 2.1 A or AA violation at a phone's width (390 px) and a laptop's (1366 px), in the light and the
dark scheme, and each page can be used by keyboard (Tab reaches a visible, focused link or button).

Every combination is saved as a screenshot; with SCREENSHOT_DIR set they land there to be looked at
(`SCREENSHOT_DIR=$PWD/var/screens .venv/bin/python -m pytest tests/studio/test_accessibility.py`)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.views import defaults
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from assets.library.collections import collection_create, collection_items_add
from assets.previews.service import preview_make
from assets.services import asset_create_from_bytes
from generations.models import AIModel, Generation, Status
from projects.services import project_create

# Pages render the same on either database: the sweep runs in the SQLite leg only (about two minutes
# of the test-time budget; README, "Contributing").
pytestmark = [pytest.mark.browser, pytest.mark.timeout(240),
              pytest.mark.skipif(connection.vendor != "sqlite", reason="one leg is enough for page rendering")]

AXE = (Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js").read_text()
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
WIDTHS = {"phone": (390, 844), "laptop": (1366, 900)}
SCHEMES = ("light", "dark")


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 400), colour).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def studio_with_work(owner: Any, catalog: None) -> dict[str, Any]:
    """An owner with two projects (one with a cover), a collection with a cover, and two jobs: one
    finished and one waiting for a worker."""
    first = project_create(owner=owner, name="Harbour at dawn")
    project_create(owner=owner, name="Empty moodboard")
    picture = asset_create_from_bytes(project=first, data=_png((30, 90, 160)), name="harbour.png")
    preview_make(picture)
    collection = collection_create(user=owner, name="Selects")
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[str(picture.pk)])
    model = AIModel.objects.get(pk="local/sketch")
    done = Generation.objects.create(
        user=owner, project=first, model=model, provider=model.provider, status=Status.SUCCEEDED,
        inputs={"prompt": "a quiet harbour at dawn", "seed": 7}, credits_estimated=1, credits_held=1,
        credits_charged=1, price_card=model.current_price, progress=100)
    waiting = Generation.objects.create(
        user=owner, project=first, model=model, provider=model.provider, status=Status.QUEUED,
        inputs={"prompt": "the same harbour at night", "seed": 8}, credits_estimated=1, credits_held=1,
        price_card=model.current_price)
    return {"project": first, "collection": collection, "picture": picture, "done": done, "waiting": waiting}


def _signed_in(browser: Any, live_server: Any, user: Any) -> None:
    client = Client()
    client.force_login(user)
    browser.get(f"{live_server.url}/accounts/login/")
    browser.add_cookie({"name": "sessionid", "value": client.cookies["sessionid"].value, "path": "/"})


def _scheme(browser: Any, scheme: str) -> None:
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": scheme}]})


def _axe_violations(browser: Any) -> list[str]:
    # Colours are checked at rest: a button still fading from its hover colour is not what a person reads.
    browser.execute_script("const s = document.createElement('style');"
                           "s.textContent = '*, *::before, *::after { transition: none !important; "
                           "animation: none !important; }'; document.head.appendChild(s);")
    browser.execute_script(AXE)
    browser.set_script_timeout(60)
    found = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})"
        "  .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' — '"
        "    + v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' [' + (n.any.concat(n.all)[0] || {}).message + ']')"
        "      .join(', '))))"
        "  .catch(e => done(['axe failed: ' + e]));", WCAG_21_AA)
    return list(found)


def _keyboard_reaches_a_control(browser: Any) -> str:
    """Tab from the top of the page: the first stop is a visible link, button or field with focus."""
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    return str(browser.execute_script(
        "const el = document.activeElement;"
        "if (!el || el === document.body) return '';"
        "const box = el.getBoundingClientRect();"
        "return (box.width > 0 && box.height > 0) ? el.tagName.toLowerCase() : '';"))


def _check(browser: Any, name: str, load: Callable[[], None], shots: Path) -> list[str]:
    problems: list[str] = []
    for width_name, (width, height) in WIDTHS.items():
        browser.set_window_size(width, height)
        for scheme in SCHEMES:
            _scheme(browser, scheme)
            load()
            browser.save_screenshot(str(shots / f"{name}-{width_name}-{scheme}.png"))
            problems += [f"{name} at {width}px, {scheme}: {v}" for v in _axe_violations(browser)]
        if not _keyboard_reaches_a_control(browser):
            problems.append(f"{name} at {width}px: Tab reaches no visible control")
    return problems


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_signed_in_pages_have_no_wcag_violations_at_both_widths_in_both_schemes(
        browser: Any, live_server: Any, owner: Any, studio_with_work: dict[str, Any], shots: Path) -> None:
    _signed_in(browser, live_server, owner)
    pages = {
        "dashboard": "/",
        "project": f"/p/{studio_with_work['project'].pk}/",
        "collections": "/collections/",
        "generation-succeeded": f"/g/{studio_with_work['done'].pk}/",
        "generation-queued": f"/g/{studio_with_work['waiting'].pk}/",
        "not-found": "/p/00000000-0000-0000-0000-000000000000/",
    }
    problems: list[str] = []
    for name, path in pages.items():
        problems += _check(browser, name, lambda path=path: browser.get(live_server.url + path), shots)
    # The project's and the collection's covers are the small WebP thumbnail, not the original.
    picture = studio_with_work["picture"].pk
    covers = []
    for path in ("/", "/collections/"):
        browser.get(live_server.url + path)
        covers += [img.get_attribute("src") for img in browser.find_elements(By.CSS_SELECTOR, ".cover img")]
    assert len(covers) == 2, covers
    assert covers and all(f"/previews/{picture}/small?v=" in src for src in covers), covers
    assert not problems, "\n".join(problems)


def test_error_pages_have_no_wcag_violations_at_both_widths_in_both_schemes(
        browser: Any, live_server: Any, db: Any, shots: Path) -> None:
    """403, 429 and 500 rendered by the views Django and allauth use, written into a page of the live
    server (so their stylesheets load as they would), and the real 404 of a signed-out visitor."""
    request = RequestFactory().get("/somewhere")
    request.user = AnonymousUser()
    rendered = {
        "forbidden": defaults.permission_denied(request, PermissionDenied()).content.decode(),
        "server-error": defaults.server_error(request).content.decode(),
        "too-many-attempts": render_to_string("429.html", request=request),
    }

    def writer(html: str) -> Callable[[], None]:
        def load() -> None:
            browser.get(f"{live_server.url}/accounts/login/")
            browser.execute_script("document.open(); document.write(arguments[0]); document.close();", html)
            browser.execute_script("return document.readyState")
        return load

    problems: list[str] = []
    for name, html in rendered.items():
        problems += _check(browser, name, writer(html), shots)
    problems += _check(browser, "not-found-signed-out",
                       lambda: browser.get(f"{live_server.url}/p/00000000-0000-0000-0000-000000000000/"), shots)
    problems += _check(browser, "sign-in", lambda: browser.get(f"{live_server.url}/accounts/login/"), shots)
    assert not problems, "\n".join(problems)
