"""Exports: a project or a selection as a streamed ZIP with the files, metadata.json and metadata.csv;
recipes embedded on request; 404 for anything not the user's, before a byte is sent."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from PIL import Image

from assets.library.collections import collection_create, collection_items_add
from assets.library.organise import asset_trash, asset_update
from assets.models import Asset, AssetSource
from assets.services import asset_create_from_bytes
from assets.sharing.export import safe_member_name
from generations.credentials import provider_key_save
from generations.models import Generation
from projects.services import project_create
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def png(color: tuple[int, int, int] = (200, 90, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(out, "PNG")
    return out.getvalue()


def stored(asset: Asset) -> bytes:
    with default_storage.open(asset.file.name, "rb") as fh:
        return fh.read()


def unzip(response: Any) -> zipfile.ZipFile:
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    assert isinstance(response, StreamingHttpResponse) and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None  # every member's CRC checks out
    return archive


def metadata(archive: zipfile.ZipFile) -> dict[str, Any]:
    return json.loads(archive.read("metadata.json"))


@pytest.fixture
def made(owner: Any, project: Any, catalog: Any) -> dict[str, Asset]:
    """A generated picture with its recipe and organisation, its upscale, an upload and a script."""
    generation = Generation.objects.create(
        user=owner, project=project, model_id="local/sketch", provider="local", status="succeeded",
        inputs={"prompt": "a lighthouse at dusk", "seed": 77, "negative_prompt": "fog",
                "api_key": "sk-inline-secret-1234", "nested": {"access_token": "tok-secret-5678", "steps": 9}},
        credits_estimated=12, credits_held=12, credits_charged=12)
    picture = asset_create_from_bytes(project=project, data=png(), name="dusk.png", source=AssetSource.GENERATION,
                                      generation=generation, metadata={"seed": 77, "style": "ink"})
    upscale = asset_create_from_bytes(project=project, data=png((10, 10, 10)), name="dusk.png",
                                      source=AssetSource.GENERATION, generation=generation, parent=picture)
    upload = asset_create_from_bytes(project=project, data=png((0, 120, 255)), name='Ünïcode "quote".png')
    script = asset_create_from_bytes(project=project, data=b"INT. LIGHTHOUSE - NIGHT\n" * 50, name="scene.fountain")
    asset_update(user=owner, asset_id=picture.pk, tags=["coast", "hero"], rating=5, favourite=True,
                 notes="use for the poster")
    collection = collection_create(user=owner, name="Poster picks")
    collection_items_add(user=owner, collection_id=collection.pk, asset_ids=[picture.pk])
    return {"picture": picture, "upscale": upscale, "upload": upload, "script": script}


def test_a_project_export_has_every_file_and_its_recipe(owner_api: Any, project: Any, made: dict[str, Asset]) -> None:
    response = owner_api.get(f"/api/v1/projects/{project.pk}/export")
    assert response["Content-Disposition"].startswith('attachment; filename="Trailer-')
    assert response["Cache-Control"] == "private, no-store" and not response.has_header("Content-Length")
    archive = unzip(response)
    doc = metadata(archive)
    assert doc["project"] == {"id": str(project.pk), "name": "Trailer"} and doc["asset_count"] == 4
    by_id = {r["id"]: r for r in doc["assets"]}
    for asset in made.values():
        assert archive.read(by_id[str(asset.pk)]["path"]) == stored(asset)
    assert sorted(archive.namelist()) == sorted(
        ["images/dusk.png", "images/dusk (2).png", "images/Ünïcode _quote_.png", "text/scene.fountain",
         "metadata.json", "metadata.csv"])
    picture = by_id[str(made["picture"].pk)]
    assert picture["prompt"] == "a lighthouse at dusk" and picture["negative_prompt"] == "fog"
    assert (picture["model"], picture["provider"], picture["seed"]) == ("local/sketch", "local", 77)
    assert (picture["tags"], picture["rating"], picture["favourite"]) == (["coast", "hero"], 5, True)
    assert picture["notes"] == "use for the poster" and [c["name"] for c in picture["collections"]] == ["Poster picks"]
    assert picture["generation"]["credits_charged"] == 12  # the user's own record includes what it cost
    assert picture["generation"]["inputs"] == {"prompt": "a lighthouse at dusk", "seed": 77, "negative_prompt": "fog",
                                               "nested": {"steps": 9}}
    assert picture["sha256"] == made["picture"].sha256 and picture["width"] == 32 and picture["size"] > 0
    assert by_id[str(made["upscale"].pk)]["parent"] == str(made["picture"].pk)
    assert by_id[str(made["upload"].pk)]["generation"] is None and by_id[str(made["upload"].pk)]["source"] == "upload"


def test_media_are_stored_and_text_is_deflated(owner_api: Any, project: Any, made: dict[str, Asset]) -> None:
    archive = unzip(owner_api.get(f"/api/v1/projects/{project.pk}/export"))
    methods = {info.filename: info.compress_type for info in archive.infolist()}
    assert methods["images/dusk.png"] == zipfile.ZIP_STORED
    assert methods["text/scene.fountain"] == methods["metadata.json"] == zipfile.ZIP_DEFLATED
    assert archive.getinfo("text/scene.fountain").compress_size < archive.getinfo("text/scene.fountain").file_size


def test_metadata_csv_has_one_row_per_asset_and_neutralises_formulas(
        owner: Any, owner_api: Any, project: Any, made: dict[str, Asset]) -> None:
    asset_update(user=owner, asset_id=made["script"].pk, notes="=HYPERLINK(\"http://evil\")")
    archive = unzip(owner_api.get(f"/api/v1/projects/{project.pk}/export"))
    rows = list(csv.DictReader(io.StringIO(archive.read("metadata.csv").decode("utf-8"))))
    assert len(rows) == 4 and {r["path"] for r in rows} == {r["path"] for r in metadata(archive)["assets"]}
    picture = next(r for r in rows if r["id"] == str(made["picture"].pk))
    assert (picture["tags"], picture["credits_charged"], picture["collections"]) == ("coast; hero", "12", "Poster picks")
    assert json.loads(picture["generation_inputs"])["seed"] == 77
    script = next(r for r in rows if r["id"] == str(made["script"].pk))
    assert script["notes"] == "'=HYPERLINK(\"http://evil\")"
    assert json.loads(archive.read("metadata.json"))["assets"][3]["notes"].startswith("=HYPERLINK")


def test_no_provider_key_ever_reaches_an_export(owner: Any, owner_api: Any, project: Any, made: dict[str, Asset],
                                                settings: Any) -> None:
    settings.KEY_ENCRYPTION_KEYS = "k1:" + "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE="
    provider_key_save(user=owner, provider="openai", api_key="sk-user-own-key-4242", verify=False)
    response = owner_api.post("/api/v1/assets/export", {"assets": [str(a.pk) for a in made.values()],
                                                        "embed_metadata": True}, format="json")
    body = b"".join(response.streaming_content)
    for secret in (b"sk-user-own-key-4242", b"sk-inline-secret-1234", b"tok-secret-5678"):
        assert secret not in body
    archive = zipfile.ZipFile(io.BytesIO(body))
    for name in archive.namelist():
        for secret in (b"sk-inline-secret-1234", b"tok-secret-5678"):
            assert secret not in archive.read(name)


def test_trashed_assets_are_left_out_of_a_project_and_refused_in_a_selection(
        owner: Any, owner_api: Any, project: Any, made: dict[str, Asset]) -> None:
    asset_trash(user=owner, asset_id=made["upload"].pk)
    doc = metadata(unzip(owner_api.get(f"/api/v1/projects/{project.pk}/export")))
    assert doc["asset_count"] == 3 and str(made["upload"].pk) not in {r["id"] for r in doc["assets"]}
    refused = owner_api.post("/api/v1/assets/export", {"assets": [str(made["picture"].pk), str(made["upload"].pk)]},
                             format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "asset_in_trash"
    assert "1 of the chosen assets is in the trash" in refused.json()["error"]["message"]


def test_an_outsider_gets_404_and_one_foreign_id_spoils_the_whole_selection(
        owner: Any, outsider: Any, outsider_api: Any, owner_api: Any, project: Any, made: dict[str, Asset]) -> None:
    assert outsider_api.get(f"/api/v1/projects/{project.pk}/export").status_code == 404
    theirs = asset_create_from_bytes(project=project_create(owner=outsider, name="Theirs"), data=png(), name="x.png")
    for client, ids in ((outsider_api, [made["picture"].pk]), (owner_api, [made["picture"].pk, theirs.pk])):
        response = client.post("/api/v1/assets/export", {"assets": [str(i) for i in ids]}, format="json")
        assert response.status_code == 404 and not response.streaming
        assert response.json()["error"]["code"] == "not_found"
    bad = owner_api.post("/api/v1/assets/export", {"assets": ["not-a-uuid"]}, format="json")
    assert bad.status_code == 400 and "assets" in bad.json()["error"]["fields"]
    assert owner_api.post("/api/v1/assets/export", {"assets": []}, format="json").status_code == 400


def test_a_selection_export_keeps_the_chosen_order_and_embeds_recipes_on_request(
        owner_api: Any, made: dict[str, Asset]) -> None:
    chosen = [made["upload"], made["picture"], made["script"]]
    response = owner_api.post("/api/v1/assets/export", {"assets": [str(a.pk) for a in chosen], "embed_metadata": True},
                              format="json")
    archive = unzip(response)
    assert response["Content-Disposition"].startswith('attachment; filename="studio-export-')
    doc = metadata(archive)
    assert doc["project"] is None and [r["id"] for r in doc["assets"]] == [str(a.pk) for a in chosen]
    assert [r["embedded"] for r in doc["assets"]] == [True, True, False]
    picture = next(r for r in doc["assets"] if r["id"] == str(made["picture"].pk))
    with Image.open(io.BytesIO(archive.read(picture["path"]))) as image:
        assert json.loads(image.text["studio:recipe"])["seed"] == 77
        assert image.text["Description"] == "a lighthouse at dusk"
    assert archive.read(doc["assets"][2]["path"]) == stored(made["script"])  # text comes as it is
    assert b"studio:recipe" not in stored(made["picture"])  # the stored original is untouched


def test_a_short_lived_link_serves_the_zip_without_a_token_then_expires(
        owner_api: Any, made: dict[str, Asset], client: Any) -> None:
    created = owner_api.post("/api/v1/assets/export", {"assets": [str(made["picture"].pk)], "link": True},
                             format="json")
    assert created.status_code == 201
    url = created.json()["url"]
    assert url.startswith("http://testserver/api/v1/assets/export/") and created.json()["expires_at"]
    doc = metadata(unzip(client.get(url)))  # a plain browser GET: no API token, no session
    assert [r["id"] for r in doc["assets"]] == [str(made["picture"].pk)]
    assert client.get(url[:-4] + "AAAA").status_code == 404
    cache.clear()  # what the expiry does
    assert client.get(url).status_code == 404


def test_a_link_stops_working_when_an_asset_goes_to_the_trash(owner: Any, owner_api: Any, made: dict[str, Asset],
                                                               client: Any) -> None:
    url = owner_api.post("/api/v1/assets/export", {"assets": [str(made["picture"].pk)], "link": True},
                         format="json").json()["url"]
    asset_trash(user=owner, asset_id=made["picture"].pk)
    assert client.get(url).status_code == 400


def test_names_are_safe_for_every_file_system() -> None:
    assert safe_member_name("../../etc/passwd") == "_._etc_passwd"  # no separator, no leading dot
    assert safe_member_name('a<b>c:d"e|f?g*h.png') == "a_b_c_d_e_f_g_h.png"
    assert safe_member_name("CON.txt") == "_CON.txt" and safe_member_name("trailing. . ") == "trailing"
    assert safe_member_name("x" * 400 + ".png").endswith("x.png") and len(safe_member_name("x" * 400 + ".png")) == 150
    long_japanese = safe_member_name("あ" * 200 + ".png")  # 3 bytes a character: 150 would be 450 bytes
    assert long_japanese.endswith("あ.png") and len(long_japanese.encode()) <= 200
    assert safe_member_name("bell\x07\u202egnp.exe") == "bell__gnp.exe"


def test_a_file_missing_from_storage_is_flagged_not_fatal(owner_api: Any, project: Any, made: dict[str, Asset]) -> None:
    default_storage.delete(made["upload"].file.name)
    archive = unzip(owner_api.get(f"/api/v1/projects/{project.pk}/export"))
    row = next(r for r in metadata(archive)["assets"] if r["id"] == str(made["upload"].pk))
    assert row["missing"] is True and archive.read(row["path"]) == b""


def test_export_queries_are_per_batch_not_per_asset(owner: Any, project: Any, made: dict[str, Asset]) -> None:
    api = api_client_for(owner)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            unzip(api.get(f"/api/v1/projects/{project.pk}/export"))
        return len(captured)

    queries()  # warm: the first request also caches the token and plan lookups
    few = queries()
    for n in range(12):
        asset_create_from_bytes(project=project, data=f"line {n}\n".encode(), name=f"note-{n}.txt")
    assert queries() == few


def test_the_project_page_offers_the_export_and_the_web_routes_stream_it(
        client: Any, owner: Any, outsider: Any, project: Any, made: dict[str, Asset]) -> None:
    client.force_login(owner)
    page = client.get(f"/p/{project.pk}/").content.decode()
    assert f'action="/p/{project.pk}/export"' in page and 'name="embed"' in page
    doc = metadata(unzip(client.get(f"/p/{project.pk}/export?embed=1")))
    assert doc["embed_metadata"] is True and doc["asset_count"] == 4
    selection = client.post("/export", {"assets": [str(made["picture"].pk), str(made["script"].pk)]})
    assert [r["id"] for r in metadata(unzip(selection))["assets"]] == [str(made["picture"].pk), str(made["script"].pk)]
    refused = client.post("/export", {"assets": [], "next": f"/p/{project.pk}/"}, follow=True)
    assert refused.redirect_chain[-1][0] == f"/p/{project.pk}/" and "Choose at least one asset" in refused.content.decode()
    client.force_login(outsider)
    assert client.get(f"/p/{project.pk}/export").status_code == 404
    assert client.post("/export", {"assets": [str(made["picture"].pk)]}).status_code == 404
