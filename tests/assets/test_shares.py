"""Share links: created, listed and revoked by their owner (API and web), and the public pages and files
anyone with a live link sees, which show only what the owner chose."""

from __future__ import annotations

import base64
import io
import re
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.hashers import check_password
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from assets.library.collections import collection_create, collection_items_add
from assets.library.organise import asset_restore, asset_trash, asset_update
from assets.models import Asset, ShareLink
from assets.previews.service import preview_make
from assets.services import asset_create_from_bytes
from assets.sharing.shares import share_create
from generations.ingest import outputs_store
from generations.models import AIModel, Generation, Status
from generations.providers.base import Output
from projects.services import project_create
from tests.conftest import headless_chromium

pytestmark = pytest.mark.django_db

SECRET_NOTE = "client hates the blue one"
SECRET_TAG = "internal-only"
PROMPT = "a lighthouse in a storm, oil painting"


def png(colour: tuple[int, int, int] = (200, 40, 90), size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def image(project: Any, name: str = "still.png", colour: tuple[int, int, int] = (200, 40, 90)) -> Asset:
    return asset_create_from_bytes(project=project, data=png(colour), name=name)


@pytest.fixture
def generated(owner: Any, project: Any, catalog: None) -> Asset:
    """A generated image with a prompt, a cost, a provider, notes and tags: everything a share must hide
    unless chosen (the prompt) or always (the rest)."""
    model = AIModel.objects.get(pk="fal-ai/flux-pro/kontext")
    source = image(project, "source.png", (1, 2, 3))
    generation = Generation.objects.create(
        user=owner, project=project, model=model, provider=model.provider, status=Status.SUCCEEDED,
        inputs={"prompt": PROMPT, "image_url": str(source.pk)}, credits_estimated=37, credits_held=37,
        credits_charged=37, provider_cost_usd=Decimal("0.4321"))
    data = png((9, 90, 200))
    asset = outputs_store(generation=generation,
                          prepared=[(Output(kind="image", mime="image/png", data=data), io.BytesIO(data), len(data))])[0]
    asset_update(user=owner, asset_id=asset.pk, notes=SECRET_NOTE, tags=[SECRET_TAG], name="lighthouse.png")
    return Asset.objects.get(pk=asset.pk)


def shared_url(share: ShareLink) -> str:
    return reverse("studio:shared", args=[share.token])


def file_url(share: ShareLink, asset: Asset, kind: str = "file") -> str:
    return reverse(f"studio:shared-{kind}", args=[share.token, asset.pk])


def assert_public_headers(response: Any) -> None:
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response["Content-Security-Policy"]


# --- managing links (API) -------------------------------------------------------------------------------------

def test_the_owner_creates_lists_and_revokes_links_over_the_api(owner_api: Any, owner: Any, project: Any) -> None:
    asset = image(project)
    created = owner_api.post("/api/v1/shares", {"target": "asset", "target_id": str(asset.pk), "show_prompt": True,
                                                "password": "open sesame"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    share = ShareLink.objects.get(pk=body["id"])
    assert body["token"] == share.token and len(share.token) >= 40
    assert body["url"] == f"http://testserver/s/{share.token}"
    assert body["has_password"] is True and "password" not in body and "open sesame" not in share.password
    assert check_password("open sesame", share.password)  # stored as a hash (the test settings' fast hasher)
    assert (body["status"], body["title"], body["view_count"]) == ("live", "still.png", 0)

    listed = owner_api.get("/api/v1/shares").json()["results"]
    assert [s["id"] for s in listed] == [body["id"]]

    revoked = owner_api.post(f"/api/v1/shares/{share.pk}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    first_revoked_at = revoked.json()["revoked_at"]
    assert owner_api.post(f"/api/v1/shares/{share.pk}/revoke").json()["revoked_at"] == first_revoked_at
    assert owner_api.get("/api/v1/shares", {"live": "true"}).json()["results"] == []


def test_links_to_collections_and_projects(owner_api: Any, owner: Any, project: Any) -> None:
    collection = collection_create(user=owner, name="Selects")
    for target, target_id, title in (("collection", collection.pk, "Selects"), ("project", project.pk, "Trailer")):
        response = owner_api.post("/api/v1/shares", {"target": target, "target_id": str(target_id)}, format="json")
        assert response.status_code == 201 and response.json()["title"] == title
        assert response.json()[target] == str(target_id)


def test_bad_requests_are_refused_with_the_reason(owner_api: Any, owner: Any, outsider: Any, project: Any) -> None:
    asset = image(project)
    theirs = image(project_create(owner=outsider, name="Theirs"))
    post = lambda **data: owner_api.post("/api/v1/shares", data, format="json")  # noqa: E731
    assert post(target="asset", target_id=str(theirs.pk)).status_code == 404
    assert post(target="galaxy", target_id=str(asset.pk)).status_code == 400
    short = post(target="asset", target_id=str(asset.pk), password="abc")
    assert short.status_code == 400 and "password" in short.json()["error"]["fields"]
    past = post(target="asset", target_id=str(asset.pk), expires_at=(timezone.now() - timedelta(hours=1)).isoformat())
    assert past.status_code == 400 and "expires_at" in past.json()["error"]["fields"]
    far = post(target="asset", target_id=str(asset.pk), expires_at=(timezone.now() + timedelta(days=400)).isoformat())
    assert far.status_code == 400
    asset_trash(user=owner, asset_id=asset.pk)
    trashed = post(target="asset", target_id=str(asset.pk))
    assert trashed.status_code == 400 and trashed.json()["error"]["code"] == "trashed"
    assert not ShareLink.objects.exists()


def test_an_outsider_cannot_see_or_revoke_a_link(outsider_api: Any, owner: Any, project: Any) -> None:
    share = share_create(user=owner, target="asset", target_id=image(project).pk)
    assert outsider_api.get(f"/api/v1/shares/{share.pk}").status_code == 404
    assert outsider_api.post(f"/api/v1/shares/{share.pk}/revoke").status_code == 404
    assert outsider_api.get("/api/v1/shares").json()["results"] == []
    share.refresh_from_db()
    assert share.revoked_at is None


# --- the public page ----------------------------------------------------------------------------------------

def test_a_shared_asset_shows_the_file_and_never_the_cost_provider_notes_or_tags(client: Any, owner: Any,
                                                                                generated: Asset) -> None:
    share = share_create(user=owner, target="asset", target_id=generated.pk)
    response = client.get(shared_url(share))
    assert response.status_code == 200
    assert_public_headers(response)
    html = response.text
    assert "lighthouse.png" in html and file_url(share, generated) in html
    # URLs carry random tokens, ids and content digests, which may contain any short string ("37", "fal"):
    # check the page without them (file_url above shows the file link is there).
    html = re.sub(r'(?:src|href|srcset|data-[a-z-]+)="[^"]*"', "", html)
    for secret in ("37", "0.4321", "credit", "$", "fal", "kontext", SECRET_NOTE, SECRET_TAG, owner.email,
                   PROMPT, generated.sha256[:12], str(generated.project_id), "Trailer"):
        assert secret not in html, secret


def test_the_prompt_shows_only_when_the_owner_chose_it(client: Any, owner: Any, generated: Asset) -> None:
    share = share_create(user=owner, target="asset", target_id=generated.pk, show_prompt=True)
    html = client.get(shared_url(share)).text
    assert PROMPT in html
    assert "0.4321" not in html and "credit" not in html and SECRET_NOTE not in html


def test_every_view_is_counted(client: Any, owner: Any, project: Any) -> None:
    share = share_create(user=owner, target="asset", target_id=image(project).pk)
    for _ in range(3):
        assert client.get(shared_url(share)).status_code == 200
    share.refresh_from_db()
    assert share.view_count == 3


def test_the_file_is_served_inline_as_its_sniffed_type_sandboxed_and_as_an_attachment_on_request(
        client: Any, owner: Any, project: Any) -> None:
    asset = image(project)
    share = share_create(user=owner, target="asset", target_id=asset.pk)
    response = client.get(file_url(share, asset))
    assert response.status_code == 200 and b"".join(response.streaming_content) == asset.file.open("rb").read()
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("inline") and "still.png" in response["Content-Disposition"]
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert_public_headers(response)
    download = client.get(file_url(share, asset) + "?download=1")
    assert download["Content-Disposition"].startswith("attachment")


def test_the_thumbnail_is_the_preview_once_made(client: Any, owner: Any, project: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=png(size=(800, 600)), name="big.png")
    share = share_create(user=owner, target="asset", target_id=asset.pk)
    before = client.get(file_url(share, asset, "thumb"))
    assert before.status_code == 200 and before["Content-Type"] == "image/png"  # the image itself meanwhile
    preview_make(asset.pk)
    after = client.get(file_url(share, asset, "thumb") + "?size=small")
    assert after.status_code == 200 and after["Content-Type"] == "image/webp"
    assert_public_headers(after)


def test_only_assets_inside_the_share_are_served(client: Any, owner: Any, project: Any) -> None:
    inside, outside = image(project, "in.png"), image(project, "out.png", (0, 0, 0))
    collection = collection_create(user=owner, name="Board")
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[inside.pk])
    share = share_create(user=owner, target="collection", target_id=collection.pk)
    assert client.get(file_url(share, inside)).status_code == 200
    for kind in ("file", "thumb", "asset"):
        assert client.get(file_url(share, outside, kind)).status_code == 404
    asset_link = share_create(user=owner, target="asset", target_id=inside.pk)
    assert client.get(file_url(asset_link, outside)).status_code == 404


def test_a_shared_collection_shows_its_items_in_order_and_hides_the_trash(client: Any, owner: Any,
                                                                          project: Any) -> None:
    a, b, c = (image(project, f"{n}.png", (n * 50, 0, 0)) for n in (1, 2, 3))
    collection = collection_create(user=owner, name="Board")
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[c.pk, a.pk, b.pk])
    share = share_create(user=owner, target="collection", target_id=collection.pk)
    html = client.get(shared_url(share)).text
    assert "Board" in html
    assert html.index("3.png") < html.index("1.png") < html.index("2.png")
    asset_trash(user=owner, asset_id=a.pk)
    html = client.get(shared_url(share)).text
    assert "1.png" not in html and "3.png" in html
    assert client.get(file_url(share, a)).status_code == 404
    asset_restore(user=owner, asset_id=a.pk)
    assert client.get(file_url(share, a)).status_code == 200


def test_a_shared_project_shows_its_assets_and_nothing_from_other_projects(client: Any, owner: Any,
                                                                           project: Any) -> None:
    mine = image(project, "in-project.png")
    other = image(project_create(owner=owner, name="Other"), "elsewhere.png", (5, 5, 5))
    share = share_create(user=owner, target="project", target_id=project.pk)
    html = client.get(shared_url(share)).text
    assert "in-project.png" in html and "elsewhere.png" not in html
    assert client.get(file_url(share, mine, "asset")).status_code == 200
    assert client.get(file_url(share, other)).status_code == 404


def _names_and_links(html: str) -> tuple[list[str], dict[str, str]]:
    names = re.findall(r'class="tile-name">([^<]+)<', html)
    links = dict((label, query.replace("&amp;", "&")) for query, label in
                 re.findall(r'href="\?([^"]+)">(?:← )?(Previous|Next)', html))
    return names, links


def test_a_shared_project_pages_newest_first_by_cursor(client: Any, owner: Any, project: Any,
                                                       monkeypatch: Any) -> None:
    """A project may hold 100,000 assets: its public pages are keyset pages, like the gallery's."""
    monkeypatch.setattr("studio.views.shares.PAGE_SIZE", 2)
    for n in range(5):
        image(project, f"p{n}.png", (n * 40, 0, 0))
    share = share_create(user=owner, target="project", target_id=project.pk)
    names, links = _names_and_links(client.get(shared_url(share)).text)
    assert names == ["p4.png", "p3.png"] and set(links) == {"Next"} and links["Next"].startswith("cursor=")
    seen = list(names)
    while "Next" in links:
        names, links = _names_and_links(client.get(f"{shared_url(share)}?{links['Next']}").text)
        seen += names
    assert seen == ["p4.png", "p3.png", "p2.png", "p1.png", "p0.png"]
    assert set(links) == {"Previous"}
    names, _ = _names_and_links(client.get(f"{shared_url(share)}?{links['Previous']}").text)
    assert names == ["p2.png", "p1.png"]
    # A cursor that is not ours (or another sort's) is the first page, not an error page.
    forged = base64.urlsafe_b64encode(b'{"s":"newest","k":["2024-01-01T00:00:00+00:00",5],"b":0}').decode()
    for junk in ("cursor=nonsense", "cursor=", "page=7", f"cursor={forged}"):
        names, _ = _names_and_links(client.get(f"{shared_url(share)}?{junk}").text)
        assert names == ["p4.png", "p3.png"], junk


def test_a_shared_collection_pages_in_its_own_order(client: Any, owner: Any, project: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("studio.views.shares.PAGE_SIZE", 2)
    assets = [image(project, f"c{n}.png", (0, n * 40, 0)) for n in range(3)]
    collection = collection_create(user=owner, name="Board")
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[a.pk for a in reversed(assets)])
    share = share_create(user=owner, target="collection", target_id=collection.pk)
    names, links = _names_and_links(client.get(shared_url(share)).text)
    assert names == ["c2.png", "c1.png"] and links == {"Next": "page=2"}
    names, links = _names_and_links(client.get(f"{shared_url(share)}?page=2").text)
    assert names == ["c0.png"] and links == {"Previous": "page=1"}
    for junk in ("page=0", "page=-1", "page=x", "page=99999999999", "page=²", "page=٣"):
        names, _ = _names_and_links(client.get(f"{shared_url(share)}?{junk}").text)
        assert names == ["c2.png", "c1.png"], junk


# --- links that do not work -------------------------------------------------------------------------------------

def test_expired_revoked_unknown_and_trashed_links_are_a_plain_404(client: Any, owner: Any, project: Any) -> None:
    asset = image(project)
    expired = share_create(user=owner, target="asset", target_id=asset.pk,
                           expires_at=timezone.now() + timedelta(minutes=5))
    ShareLink.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked = share_create(user=owner, target="asset", target_id=asset.pk)
    ShareLink.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    for share in (expired, revoked):
        for url in (shared_url(share), file_url(share, asset), file_url(share, asset, "thumb"),
                    file_url(share, asset, "asset")):
            response = client.get(url)
            assert response.status_code == 404, url
    assert client.get(reverse("studio:shared", args=["x" * 43])).status_code == 404
    live = share_create(user=owner, target="asset", target_id=asset.pk)
    asset_trash(user=owner, asset_id=asset.pk)
    assert client.get(shared_url(live)).status_code == 404
    asset_restore(user=owner, asset_id=asset.pk)
    assert client.get(shared_url(live)).status_code == 200
    ShareLink.objects.filter(pk=live.pk).update(view_count=0)
    assert ShareLink.objects.get(pk=revoked.pk).view_count == 0  # a dead link's views are not counted


# --- passwords --------------------------------------------------------------------------------------------

@pytest.fixture
def locked(owner: Any, project: Any) -> tuple[ShareLink, Asset]:
    asset = image(project, "secret.png")
    return share_create(user=owner, target="asset", target_id=asset.pk, password="open sesame"), asset


def test_a_password_link_asks_first_and_serves_nothing_until_unlocked(client: Any, locked: tuple[ShareLink, Asset]) -> None:
    share, asset = locked
    prompt = client.get(shared_url(share))
    assert prompt.status_code == 200 and "Password required" in prompt.text and "secret.png" not in prompt.text
    assert prompt["Cache-Control"] == "no-store"
    # The prompt posts a form: under no-referrer browsers send `Origin: null`, which CSRF refuses.
    assert prompt["Referrer-Policy"] == "same-origin" and prompt["X-Robots-Tag"] == "noindex, nofollow"
    assert client.get(file_url(share, asset)).status_code == 404
    wrong = client.post(shared_url(share), {"password": "guess"})
    assert wrong.status_code == 400 and "not the password" in wrong.text
    right = client.post(shared_url(share), {"password": "open sesame"})
    assert right.status_code == 302 and right["Location"] == shared_url(share)
    page = client.get(shared_url(share))
    assert "secret.png" in page.text and page["Cache-Control"] == "no-store"
    assert page["Referrer-Policy"] == "no-referrer"
    served = client.get(file_url(share, asset))
    assert served.status_code == 200 and served["Cache-Control"] == "no-store"
    share.refresh_from_db()
    assert share.view_count == 1  # the prompt is not a view
    assert Client().get(file_url(share, asset)).status_code == 404  # another browser must unlock too


def test_a_locked_project_link_says_nothing_about_which_assets_it_holds(client: Any, owner: Any,
                                                                        project: Any) -> None:
    inside = image(project, "inside.png")
    outside = image(project_create(owner=owner, name="Elsewhere"), "outside.png")
    share = share_create(user=owner, target="project", target_id=project.pk, password="open sesame")
    answers = [client.get(file_url(share, asset, "asset")) for asset in (inside, outside)]
    assert [a.status_code for a in answers] == [200, 200]
    assert all("Password required" in a.text and ".png" not in a.text for a in answers)


def test_the_password_form_needs_the_csrf_token(locked: tuple[ShareLink, Asset]) -> None:
    share, _ = locked
    browser = Client(enforce_csrf_checks=True)
    assert browser.post(shared_url(share), {"password": "open sesame"}).status_code == 403
    page = browser.get(shared_url(share))
    token = page.cookies["csrftoken"].value
    response = browser.post(shared_url(share), {"password": "open sesame", "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_password_guesses_are_rate_limited_per_address_and_link(locked: tuple[ShareLink, Asset],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    share, _ = locked
    # django-ratelimit counts in fixed one-minute windows; hold its clock still so the eleven attempts
    # cannot straddle a window's edge on a slow machine (each check hashes a password).
    import types

    import django_ratelimit.core

    now = time.time()
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: now))
    guesser = Client(REMOTE_ADDR="203.0.113.7")
    for n in range(10):
        assert guesser.post(shared_url(share), {"password": f"guess {n}"}).status_code == 400
    limited = guesser.post(shared_url(share), {"password": "open sesame"})  # right, but too late
    assert limited.status_code == 429 and "Too many attempts" in limited.text
    assert "secret.png" not in guesser.get(shared_url(share)).text
    other_address = Client(REMOTE_ADDR="198.51.100.9")
    assert other_address.post(shared_url(share), {"password": "open sesame"}).status_code == 302


def test_behind_a_proxy_guesses_are_counted_per_client_not_per_proxy(locked: tuple[ShareLink, Asset],
                                                                     settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import django_ratelimit.core

    now = time.time()
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: now))
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    share, _ = locked
    proxy = "10.0.0.2"
    guesser = Client(REMOTE_ADDR=proxy, HTTP_X_REAL_IP="203.0.113.7")
    for n in range(10):
        assert guesser.post(shared_url(share), {"password": f"guess {n}"}).status_code == 400
    assert guesser.post(shared_url(share), {"password": "open sesame"}).status_code == 429
    # Another visitor through the same proxy is not locked out by the guesser.
    visitor = Client(REMOTE_ADDR=proxy, HTTP_X_REAL_IP="198.51.100.9")
    assert visitor.post(shared_url(share), {"password": "open sesame"}).status_code == 302
    # A header that is not an address counts against the proxy's own address, not a 500.
    junk = Client(REMOTE_ADDR=proxy, HTTP_X_REAL_IP="<script>")
    assert junk.post(shared_url(share), {"password": "guess"}).status_code == 400


# --- managing links (web) ----------------------------------------------------------------------------------

def test_the_shares_page_lists_my_links_with_their_urls_views_and_revoke(client: Any, owner: Any, outsider: Any,
                                                                          project: Any) -> None:
    mine = share_create(user=owner, target="asset", target_id=image(project).pk)
    ShareLink.objects.filter(pk=mine.pk).update(view_count=12)
    theirs = share_create(user=outsider, target="project", target_id=project_create(owner=outsider, name="X").pk)
    client.force_login(owner)
    html = client.get(reverse("studio:shares")).text
    assert f"http://testserver/s/{mine.token}" in html and theirs.token not in html
    assert '<td class="share-views">12</td>' in html
    response = client.post(reverse("studio:share-revoke", args=[mine.pk]))
    assert response.status_code == 302
    mine.refresh_from_db()
    assert mine.revoked_at is not None
    assert client.post(reverse("studio:share-revoke", args=[theirs.pk])).status_code == 404


def test_sharing_from_the_asset_page_comes_back_to_it(client: Any, owner: Any, project: Any) -> None:
    asset = image(project)
    client.force_login(owner)
    page = client.get(reverse("studio:asset", args=[asset.pk]))
    assert 'name="target" value="asset"' in page.text
    back = reverse("studio:asset", args=[asset.pk])
    response = client.post(reverse("studio:share-create"), {"target": "asset", "target_id": str(asset.pk),
                                                            "expires_in": "7", "show_prompt": "on", "next": back})
    assert response.status_code == 302 and response["Location"] == back
    share = ShareLink.objects.get(asset=asset)
    assert share.show_prompt and timedelta(days=6) < share.expires_at - timezone.now() <= timedelta(days=7)
    evil = client.post(reverse("studio:share-create"), {"target": "asset", "target_id": str(asset.pk),
                                                        "next": "https://evil.example/"})
    assert evil["Location"] == reverse("studio:shares")
    project_share = client.post(reverse("studio:share-create"), {"target": "project", "target_id": str(project.pk)})
    assert project_share.status_code == 302 and ShareLink.objects.filter(project=project).exists()


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_in_a_browser_a_visitor_unlocks_a_password_link_and_sees_the_picture(
        live_server: Any, owner: Any, project: Any, tmp_path: Any) -> None:
    """The whole public path as a browser takes it: the CSRF-protected prompt under the page's own
    referrer policy, the session that remembers the unlock, and the image loading under the page's CSP."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    asset = image(project, "secret.png")
    share = share_create(user=owner, target="asset", target_id=asset.pk, password="open sesame")
    browser = headless_chromium(tmp_path / "chrome")
    try:
        browser.get(f"{live_server.url}{shared_url(share)}")
        wait = WebDriverWait(browser, 30)
        browser.find_element(By.NAME, "password").send_keys("wrong one")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".alert-error"), "not the password"))
        browser.find_element(By.NAME, "password").send_keys("open sesame")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        picture = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".shared-preview img")))
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                              picture))
        assert browser.find_element(By.TAG_NAME, "h1").text == "secret.png"
    finally:
        browser.quit()
    share.refresh_from_db()
    assert share.view_count == 1
