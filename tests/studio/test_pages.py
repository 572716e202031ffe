"""The studio's pages and htmx fragments, driven through Django's test client as a browser would."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.urls import reverse

from accounts.models import ApiToken, User
from assets.models import Asset
from assets.services import asset_create_from_bytes
from billing.services import credits_summary
from generations.models import Generation, Status
from generations.runner import generation_run
from generations.services import generation_create
from projects.models import Project
from projects.services import project_create
from tests.studio.support import image_asset, png_bytes

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
SKETCH = {"model": "local/sketch", "inputs.prompt": "a lighthouse at night", "inputs.width": "256",
          "inputs.height": "256", "inputs.seed": "", "inputs.steps": "2", "inputs.style": "waves"}


@pytest.fixture(autouse=True)
def fast_polling(settings: Any) -> None:
    settings.GENERATION_POLL_INTERVAL = 0.01




def queue_sketch(owner: Any, project: Project, prompt: str = "a lighthouse") -> Generation:
    return generation_create(user=owner, project_id=project.pk, model_id="local/sketch",
                             inputs={"prompt": prompt, "width": 256, "height": 256, "steps": 2})


def project_url(project: Project) -> str:
    return reverse("studio:project", kwargs={"project_id": project.pk})


# --- dashboard ---------------------------------------------------------------------------------------------

def _cover_src(html: str, card_class: str) -> str | None:
    card = html[html.index(card_class):]
    cover = card[card.index('<div class="cover">'):card.index("</div>", card.index('<div class="cover">'))]
    found = re.search(r'<img [^>]*src="([^"]+)"', cover)
    return found.group(1).replace("&amp;", "&") if found else None


def test_project_and_collection_covers_load_the_small_webp_thumbnail_not_the_original(
        signed_in: Any, owner: Any, project: Project) -> None:
    from assets.library.collections import collection_create, collection_items_add
    from assets.previews.service import preview_make

    asset = asset_create_from_bytes(project=project, data=png_bytes((1600, 1200)), name="upscaled.png")
    preview_make(asset.pk)
    collection = collection_create(user=owner, name="Picks")
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[str(asset.pk)])
    for page, card_class in ((reverse("studio:dashboard"), 'class="card project-card'),
                             (reverse("studio:collections"), "data-collection=")):
        src = _cover_src(signed_in.get(page).text, card_class)
        assert src and src.startswith(f"/previews/{asset.pk}/small?v="), src
        image = signed_in.get(src)
        body = b"".join(image.streaming_content)
        assert image.status_code == 200 and image["Content-Type"] == "image/webp"
        assert len(body) < asset.size / 4 and "download" not in src


def test_a_cover_without_a_thumbnail_yet_is_the_icon_never_the_original(signed_in: Any, owner: Any,
                                                                        project: Project) -> None:
    from assets.library.collections import collection_create, collection_items_add

    asset = image_asset(project)  # its preview is still pending: nothing made it yet
    collection = collection_create(user=owner, name="Picks")
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[str(asset.pk)])
    for page, card_class in ((reverse("studio:dashboard"), 'class="card project-card'),
                             (reverse("studio:collections"), "data-collection=")):
        html = signed_in.get(page).text
        assert _cover_src(html, card_class) is None
        assert f"/api/v1/assets/{asset.pk}/download" not in html


def test_anonymous_visitors_are_sent_to_sign_in(client: Any, project: Project) -> None:
    for url in (reverse("studio:dashboard"), project_url(project), reverse("studio:account")):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


# --- the project page and its generate panel ----------------------------------------------------------------

def test_the_project_page_renders_the_generate_form_for_sketch_with_fields_from_the_schema(
        signed_in: Any, project: Project, catalog: None) -> None:
    response = signed_in.get(project_url(project))
    assert response.status_code == 200
    html = response.text
    assert 'id="generate-form"' in html and 'id="estimate"' in html and 'id="job-list"' in html
    assert 'id="asset-grid"' in html
    assert '<option value="local/sketch" selected>' in html
    assert re.search(r'<textarea id="input-prompt" name="inputs.prompt"[^>]*required', html)
    assert re.search(r'name="inputs.width" value="768" min="256" max="1536" step="64"', html)
    assert '<option value="shapes" selected>shapes</option>' in html
    assert "Refinement passes" in html  # the schema's title is the label
    # models are grouped by operation with their price per unit
    assert '<optgroup label="Upscale">' in html and "$0.01 per image" in html


def test_choosing_another_model_swaps_the_form_and_keeps_the_project_images_on_offer(
        signed_in: Any, project: Project, catalog: None) -> None:
    asset = image_asset(project)
    response = signed_in.get(project_url(project), {"partial": "generate", "model": "local/upscale"}, **HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="generate-panel"')
    assert "<html" not in response.text
    assert 'name="inputs.image"' in response.text and f'<option value="{asset.pk}">photo.png · image 64×48' in response.text
    assert '<option value="2" selected>2</option>' in response.text


def test_the_estimate_partial_shows_credits_and_the_available_balance(signed_in: Any, project: Project,
                                                                      catalog: None) -> None:
    response = signed_in.post(reverse("studio:estimate", kwargs={"project_id": project.pk}), SKETCH, **HTMX)
    assert response.status_code == 200
    assert 'id="estimate"' in response.text
    assert "1 credit" in response.text and "you have 500 available" in response.text


def test_the_estimate_partial_shows_validation_errors(signed_in: Any, project: Project, catalog: None) -> None:
    data = {**SKETCH, "inputs.prompt": "", "inputs.width": "100"}
    response = signed_in.post(reverse("studio:estimate", kwargs={"project_id": project.pk}), data, **HTMX)
    assert response.status_code == 200
    assert "Prompt: This field is required." in response.text
    assert "Width:" in response.text and "256" in response.text


def test_submitting_the_generate_form_queues_a_generation_and_holds_credits(
        signed_in: Any, owner: Any, project: Project, catalog: None) -> None:
    response = signed_in.post(reverse("studio:generate", kwargs={"project_id": project.pk}), SKETCH)
    assert response.status_code == 302 and response["Location"].startswith(project_url(project))
    generation = Generation.objects.get(project=project)
    assert generation.status == Status.QUEUED and generation.model_id == "local/sketch"
    assert generation.inputs["prompt"] == "a lighthouse at night" and generation.inputs["width"] == 256
    assert generation.inputs["style"] == "waves" and isinstance(generation.inputs["seed"], int)
    assert credits_summary(user=owner).held > 0


def test_submitting_with_htmx_returns_the_panel_and_a_polling_job_list(
        signed_in: Any, project: Project, catalog: None) -> None:
    response = signed_in.post(reverse("studio:generate", kwargs={"project_id": project.pk}), SKETCH, **HTMX)
    assert response.status_code == 200
    generation = Generation.objects.get(project=project)
    assert 'id="generate-panel"' in response.text and "Queued Offline sketch" in response.text
    job_list = response.text[response.text.index('<section id="job-list"'):]
    assert 'hx-swap-oob="true"' in job_list[:200] and 'hx-trigger="every 1s"' in job_list
    assert f'data-generation="{generation.pk}"' in job_list and 'data-status="queued"' in job_list
    assert 'id="credits" class="credits" href' in response.text  # the header's held credits, out of band


def test_invalid_inputs_show_errors_next_to_the_fields_and_create_nothing(
        signed_in: Any, project: Project, catalog: None) -> None:
    data = {**SKETCH, "inputs.width": "300", "inputs.steps": "many"}
    response = signed_in.post(reverse("studio:generate", kwargs={"project_id": project.pk}), data)
    assert response.status_code == 400
    assert not Generation.objects.exists()
    assert re.search(r'data-input="steps">.*?<p class="field-error">Enter a whole number.</p>', response.text, re.S)
    assert 'value="many"' in response.text  # what was typed stays in the field

    data = {**SKETCH, "inputs.width": "300"}
    response = signed_in.post(reverse("studio:generate", kwargs={"project_id": project.pk}), data)
    assert response.status_code == 400 and not Generation.objects.exists()
    assert re.search(r'data-input="width">.*?<p class="field-error">300 is not a multiple of 64',
                     response.text, re.S)


def test_insufficient_credits_shows_the_message_and_creates_nothing(client: Any, catalog: None) -> None:
    from billing.signup import user_create

    broke = user_create(email="broke@example.com", password="x-correct-horse", starter_credits=0)
    project = project_create(owner=broke, name="Dreams")
    client.force_login(broke)
    response = client.post(reverse("studio:generate", kwargs={"project_id": project.pk}), SKETCH)
    assert response.status_code == 402
    assert "Not enough credits: this job needs 1 credit and you have 0 available" in response.text
    assert not Generation.objects.exists()
    assert credits_summary(user=broke).held == 0


def test_a_cost_limit_below_the_estimate_is_shown_on_the_field(signed_in: Any, project: Project,
                                                               catalog: None) -> None:
    url = reverse("studio:generate", kwargs={"project_id": project.pk})
    response = signed_in.post(url, {**SKETCH, "max_credits": "0"})
    assert response.status_code == 400 and not Generation.objects.exists()
    assert re.search(r'<details class="cost-limit" open>.*?<p class="field-error" role="alert">At least 1 for this job',
                     response.text, re.S)
    assert signed_in.post(url, {**SKETCH, "max_credits": "3"}).status_code == 302
    assert Generation.objects.get().credits_held == 3


def test_an_archived_project_refuses_to_generate(signed_in: Any, project: Project, catalog: None) -> None:
    project.archived = True
    project.save()
    response = signed_in.post(reverse("studio:generate", kwargs={"project_id": project.pk}), SKETCH)
    assert response.status_code == 400 and "archived" in response.text
    assert not Generation.objects.exists()


# --- the job list ----------------------------------------------------------------------------------------

def test_the_job_list_partial_returns_286_when_no_job_is_active_and_200_while_one_is_queued(
        signed_in: Any, owner: Any, project: Project, catalog: None) -> None:
    response = signed_in.get(project_url(project), {"partial": "jobs"}, **HTMX)
    assert response.status_code == 286
    assert 'id="job-list"' in response.text and "every 1s" not in response.text

    generation = queue_sketch(owner, project)
    response = signed_in.get(project_url(project), {"partial": "jobs"}, **HTMX)
    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in response.text
    assert f'active={generation.pk}' in response.text
    assert re.search(r'class="job" data-status="queued"', response.text)


def test_when_a_watched_job_finishes_the_asset_grid_and_credits_are_swapped_in(
        signed_in: Any, owner: Any, project: Project, catalog: None) -> None:
    generation = queue_sketch(owner, project)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED, generation.error_message
    response = signed_in.get(project_url(project), {"partial": "jobs", "active": str(generation.pk)}, **HTMX)
    assert response.status_code == 286
    assert 'data-status="succeeded"' in response.text and "Charged 1 credit" in response.text
    grid = response.text[response.text.index('<div id="asset-grid"'):]
    assert grid.startswith('<div id="asset-grid" hx-swap-oob="true">')
    output = Asset.objects.get(generation=generation)
    assert f'src="/api/v1/assets/{output.pk}/download?inline=1"' in grid
    assert "<strong>499</strong> credits" in response.text

    # A poll that was not watching that job does not re-send the grid.
    response = signed_in.get(project_url(project), {"partial": "jobs"}, **HTMX)
    assert 'id="asset-grid"' not in response.text


def test_the_cancel_view_cancels_a_queued_job_and_releases_the_hold(
        signed_in: Any, owner: Any, project: Project, catalog: None) -> None:
    generation = queue_sketch(owner, project)
    assert credits_summary(user=owner).held == 1
    url = reverse("studio:generation-cancel", kwargs={"generation_id": generation.pk})
    response = signed_in.post(url, {"from": "jobs", "next": project_url(project)}, **HTMX)
    assert response.status_code == 200
    generation.refresh_from_db()
    assert generation.status == Status.CANCELED
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
    assert 'data-status="canceled"' in response.text and "every 1s" not in response.text

    # Canceling again is refused with a message, not an error page.
    response = signed_in.post(url, {"next": project_url(project)})
    assert response.status_code == 302 and response["Location"] == project_url(project)


def test_the_cancel_view_ignores_a_next_url_on_another_site(signed_in: Any, owner: Any, project: Project,
                                                            catalog: None) -> None:
    generation = queue_sketch(owner, project)
    url = reverse("studio:generation-cancel", kwargs={"generation_id": generation.pk})
    response = signed_in.post(url, {"next": "https://evil.example/"})
    assert response["Location"] == reverse("studio:generation", kwargs={"generation_id": generation.pk})


# --- assets ------------------------------------------------------------------------------------------------

def test_uploading_an_image_adds_it_to_the_grid_and_a_refused_file_shows_why(
        signed_in: Any, project: Project) -> None:
    url = reverse("studio:asset-upload", kwargs={"project_id": project.pk})
    upload = io.BytesIO(png_bytes())
    upload.name = "cat.png"
    response = signed_in.post(url, {"file": upload}, **HTMX)
    assert response.status_code == 200
    asset = Asset.objects.get(project=project)
    assert asset.kind == "image" and asset.name == "cat.png"
    assert f'<a class="asset-tile" href="/a/{asset.pk}/"' in response.text
    assert 'loading="lazy"' in response.text

    bad = io.BytesIO(b"MZ\x90\x00" + b"\x00" * 200)
    bad.name = "setup.exe"
    response = signed_in.post(url, {"file": bad}, follow=True)
    assert "setup.exe:" in response.text and "does not accept" in response.text
    assert Asset.objects.filter(project=project).count() == 1


def test_the_asset_page_shows_the_recipe_and_use_again_prefills_the_panel(
        signed_in: Any, owner: Any, project: Project, catalog: None) -> None:
    generation = queue_sketch(owner, project, prompt="a red fox in snow")
    generation_run(generation.pk)
    output = Asset.objects.get(generation=generation)
    response = signed_in.get(reverse("studio:asset", kwargs={"asset_id": output.pk}))
    assert response.status_code == 200
    html = response.text
    assert "Recipe" in html and "Offline sketch" in html and "a red fox in snow" in html
    assert "1 credit" in html and "256 × 256 px" in html and output.sha256[:12] in html
    assert f'href="http://testserver/api/v1/assets/{output.pk}/download"' in html  # the download link
    use_again = re.search(r'id="use-again" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert f"from={generation.pk}" in use_again
    # quick actions for an image: the upscaler and the background remover
    assert "?model=local/upscale&amp;asset=" in html and "?model=local/remove-background&amp;asset=" in html

    panel = signed_in.get(use_again).text
    assert '<option value="local/sketch" selected>' in panel
    assert ">a red fox in snow</textarea>" in panel
    assert f'name="inputs.seed" value="{generation.inputs["seed"]}"' in panel

    response = signed_in.get(project_url(project), {"model": "local/upscale", "asset": str(output.pk)})
    assert f'<option value="{output.pk}" selected>' in response.text


# --- the generation page --------------------------------------------------------------------------------------

def test_the_generation_page_shows_progress_and_its_live_partial_stops_polling_when_done(
        signed_in: Any, owner: Any, project: Project, catalog: None) -> None:
    generation = queue_sketch(owner, project)
    url = reverse("studio:generation", kwargs={"generation_id": generation.pk})
    response = signed_in.get(url)
    assert response.status_code == 200
    assert 'data-status="queued"' in response.text and "Cancel job" in response.text
    assert "Queued local/sketch" in response.text  # the log
    live = signed_in.get(url, {"partial": "live"}, **HTMX)
    assert live.status_code == 200 and 'hx-trigger="every 1s"' in live.text

    generation_run(generation.pk)
    live = signed_in.get(url, {"partial": "live"}, **HTMX)
    assert live.status_code == 286
    assert 'data-status="succeeded"' in live.text and "every 1s" not in live.text
    assert "Succeeded: 1 output(s)" in live.text


# --- access -------------------------------------------------------------------------------------------------

def test_an_outsider_gets_404_on_the_owners_project_asset_and_generation(
        client: Any, owner: Any, outsider: Any, project: Project, catalog: None) -> None:
    asset = image_asset(project)
    generation = queue_sketch(owner, project)
    client.force_login(outsider)
    pages = [project_url(project), reverse("studio:asset", kwargs={"asset_id": asset.pk}),
             reverse("studio:generation", kwargs={"generation_id": generation.pk})]
    for url in pages:
        assert client.get(url).status_code == 404, url
    posts = [reverse("studio:generate", kwargs={"project_id": project.pk}),
             reverse("studio:estimate", kwargs={"project_id": project.pk}),
             reverse("studio:asset-upload", kwargs={"project_id": project.pk}),
             reverse("studio:project-edit", kwargs={"project_id": project.pk}),
             reverse("studio:project-delete", kwargs={"project_id": project.pk}),
             reverse("studio:generation-cancel", kwargs={"generation_id": generation.pk})]
    for url in posts:
        assert client.post(url, {**SKETCH, "name": "Mine now", "confirm": "yes"}).status_code == 404, url
    generation.refresh_from_db()
    assert generation.status == Status.QUEUED
    assert Project.objects.get(pk=project.pk).name == "Trailer"
    # "use again" with someone else's generation prefills nothing
    client.force_login(owner)
    other = project_create(owner=outsider, name="Other")
    theirs = queue_sketch(outsider, other, prompt="their secret prompt")
    response = client.get(project_url(project), {"from": str(theirs.pk)})
    assert response.status_code == 200 and "their secret prompt" not in response.text


# --- account ------------------------------------------------------------------------------------------------

def test_the_account_page_creates_a_token_shown_once_and_revoke_removes_it(signed_in: Any, owner: Any) -> None:
    response = signed_in.get(reverse("studio:account"))
    assert response.status_code == 200 and "owner@example.com" in response.text
    assert f'action="{reverse("account_logout")}"' in response.text

    response = signed_in.post(reverse("studio:token-create"), {"name": "laptop"})
    assert response.status_code == 200
    token = re.search(r'id="new-token" type="text" readonly value="([^"]+)"', response.text).group(1)
    row = ApiToken.objects.get(user=owner)
    assert row.name == "laptop" and token.startswith(row.token_key)
    assert signed_in.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200

    again = signed_in.get(reverse("studio:account")).text
    assert token not in again and f"{row.token_key}…" in again and "laptop" in again

    response = signed_in.post(reverse("studio:token-revoke", kwargs={"token_key": row.token_key}))
    assert response.status_code == 302
    assert not ApiToken.objects.filter(user=owner).exists()


def test_an_outsider_cannot_revoke_my_token(client: Any, owner: Any, outsider: Any) -> None:
    from accounts.services import api_token_create

    row, _ = api_token_create(user=owner, name="mine")
    client.force_login(outsider)
    client.post(reverse("studio:token-revoke", kwargs={"token_key": row.token_key}))
    assert ApiToken.objects.filter(pk=row.pk).exists()


# --- allauth ------------------------------------------------------------------------------------------------

def test_the_signup_page_renders_in_our_layout_and_signing_up_grants_starter_credits(
        client: Any, settings: Any) -> None:
    settings.STARTER_CREDITS = 250
    response = client.get(reverse("account_signup"))
    assert response.status_code == 200
    assert 'class="site-header"' in response.text and "studio/studio.css" in response.text
    assert 'class="card auth-card"' in response.text and "Sign in" in response.text
    response = client.post(reverse("account_signup"), {"email": "new@example.com", "password1": "a-long-pass-phrase",
                                                       "password2": "a-long-pass-phrase"})
    assert response.status_code == 302
    user = User.objects.get(email="new@example.com")
    assert credits_summary(user=user).balance == 250
    dashboard = client.get(reverse("studio:dashboard"))
    assert "<strong>250</strong> credits" in dashboard.text and "Sign out" in dashboard.text


def test_login_password_reset_and_password_change_pages_render_in_our_layout(client: Any, owner: Any) -> None:
    for name in ("account_login", "account_reset_password"):
        response = client.get(reverse(name))
        assert response.status_code == 200 and 'class="site-header"' in response.text, name
        assert "Sign up" in response.text and "Sign out" not in response.text
    client.force_login(owner)
    for name in ("account_change_password", "account_email"):
        response = client.get(reverse(name))
        assert response.status_code == 200 and 'class="card auth-card"' in response.text, name
        assert "owner@example.com" in response.text and "<strong>500</strong> credits" in response.text


# --- query counts ---------------------------------------------------------------------------------------------

def test_the_project_page_query_count_is_bounded(signed_in: Any, owner: Any, project: Project, catalog: None,
                                                 django_assert_max_num_queries: Any) -> None:
    def add_content(n: int) -> None:
        for i in range(n):
            image_asset(project, name=f"p{i}.png")
            queue_sketch(owner, project, prompt=f"job {i}")

    add_content(2)
    # Session and user, credits, project, models with prices, the user's provider keys (model
    # availability), recent run times (speed hints), assets, jobs with outputs, the estimate, the
    # budget card, the running cost total.
    with django_assert_max_num_queries(18) as few:
        signed_in.get(project_url(project))
    add_content(6)
    with django_assert_max_num_queries(18) as many:
        response = signed_in.get(project_url(project))
    assert len(many.captured_queries) == len(few.captured_queries)
    assert response.text.count('class="job"') == 8 and response.text.count('class="asset-tile"') == 8
    with django_assert_max_num_queries(6):
        signed_in.get(project_url(project), {"partial": "jobs"}, **HTMX)
