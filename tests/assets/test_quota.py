"""Storage use and the plan's quota: what counts, the refusal at the limit (400 quota_exceeded with
used/limit/size, nothing stored), generated outputs stored even past it, the storage endpoint and the
account page, and two uploads racing for the last free space (PostgreSQL)."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from assets.library.organise import asset_trash
from assets.models import Asset, AssetSource
from assets.services import asset_create
from assets.uploads.quota import MIB, QuotaExceeded, storage_by_project, storage_use, storage_used
from billing.limits import plan_assign
from billing.models import Plan
from projects.services import project_create
from tests.assets.test_uploads import FOUNTAIN, media_files, named, png_bytes

pytestmark = pytest.mark.django_db


def on_plan(user: Any, quota_mb: int | None, code: str = "tight") -> Plan:
    plan = Plan.objects.create(code=code, name=code.title(), storage_quota_mb=quota_mb)
    plan_assign(user=user, plan=plan)
    return plan


def upload(project: Any, data: bytes, name: str = "a.png", **kwargs: Any) -> Asset:
    return asset_create(project=project, fh=io.BytesIO(data), name=name, size=len(data), **kwargs)


def text_of_size(size: int) -> bytes:
    return (b"word " * (size // 5 + 1))[:size]


def test_use_counts_every_asset_of_the_owner_the_trash_included(owner: Any, outsider: Any, project: Any) -> None:
    other = project_create(owner=owner, name="Second")
    a = upload(project, text_of_size(1000), "a.txt")
    upload(project, text_of_size(2000), "b.txt")
    upload(other, text_of_size(500), "c.txt")
    upload(project_create(owner=outsider, name="Theirs"), text_of_size(7000), "d.txt")
    asset_trash(user=owner, asset_id=a.pk)
    assert storage_used(owner_id=owner.pk) == 3500
    assert storage_by_project(owner_id=owner.pk) == {project.pk: {"used": 3000, "assets": 2},
                                                     other.pk: {"used": 500, "assets": 1}}
    Asset.objects.filter(pk=a.pk).delete()  # purged: no longer counted
    assert storage_used(owner_id=owner.pk) == 2500


def test_an_upload_over_the_quota_is_refused_with_used_and_limit_and_stores_nothing(
        owner: Any, owner_api: Any, project: Any, settings: Any) -> None:
    on_plan(owner, quota_mb=1)
    upload(project, text_of_size(MIB - 1000), "big.txt")
    before = set(media_files(settings))
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk),
                                                 "file": named(text_of_size(2000), "more.txt")}, format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["storage"] == {"used": MIB - 1000, "limit": MIB, "size": 2000}
    assert error["message"] == ("Storage full: this file is 2.0 KB, and your Tight plan's 1.0 MB has 1000 bytes "
                                "left (1023.0 KB used). Delete files or empty the trash to make room, or move "
                                "to a larger plan.")
    assert error["fields"] == {"file": [error["message"]]}
    assert Asset.objects.count() == 1 and set(media_files(settings)) == before
    # Exactly at the limit is allowed.
    fits = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(text_of_size(1000), "f.txt")},
                          format="multipart")
    assert fits.status_code == 201
    assert storage_use(owner=owner).available == 0


def test_the_trash_counts_until_it_is_emptied(owner: Any, project: Any) -> None:
    from assets.library.organise import assets_trash_empty

    on_plan(owner, quota_mb=1)
    first = upload(project, text_of_size(MIB - 10), "a.txt")
    asset_trash(user=owner, asset_id=first.pk)
    with pytest.raises(QuotaExceeded):
        upload(project, text_of_size(100), "b.txt")
    assets_trash_empty(user=owner)
    assert upload(project, text_of_size(100), "b.txt").size == 100


def test_a_plan_without_a_quota_is_unlimited(owner: Any, project: Any) -> None:
    on_plan(owner, quota_mb=None, code="unlimited")
    upload(project, text_of_size(5000), "a.txt")
    use = storage_use(owner=owner)
    assert (use.used, use.limit, use.available, use.over_quota, use.percent) == (5000, None, None, False, None)


def test_a_plan_change_applies_to_the_next_upload(owner: Any, project: Any) -> None:
    on_plan(owner, quota_mb=0, code="zero")
    with pytest.raises(QuotaExceeded):
        upload(project, FOUNTAIN, "s.fountain")
    plan_assign(user=owner, plan=Plan.objects.create(code="bigger", name="Bigger", storage_quota_mb=10))
    assert upload(project, FOUNTAIN, "s.fountain").kind == "text"


def test_a_quota_used_to_the_byte_is_full_and_the_percentage_rounds_down() -> None:
    from assets.uploads.quota import StorageUse

    full = StorageUse(used=MIB, limit=MIB, plan_code="p", plan_name="P")
    assert full.over_quota and full.available == 0 and full.percent == 100
    nearly = StorageUse(used=MIB - MIB // 250, limit=MIB, plan_code="p", plan_name="P")  # 99.6%
    assert not nearly.over_quota and nearly.percent == 99


def test_a_generated_output_is_stored_past_the_quota_and_then_uploads_are_refused(
        owner: Any, owner_api: Any, project: Any) -> None:
    on_plan(owner, quota_mb=1)
    upload(project, text_of_size(MIB - 100), "a.txt")
    output = upload(project, png_bytes((300, 300), noise=True), "out.png", source=AssetSource.GENERATION)
    assert output.pk and output.size > 100
    use = storage_use(owner=owner)
    assert use.over_quota and use.available == 0 and use.percent == 100
    body = owner_api.get("/api/v1/storage").json()
    assert body["over_quota"] is True and body["used"] == MIB - 100 + output.size
    refused = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(b"hi", "n.txt")},
                             format="multipart")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "quota_exceeded"


def test_a_full_quota_refuses_new_generations_and_holds_nothing(owner: Any, owner_api: Any, project: Any,
                                                               catalog: None) -> None:
    from billing.services import credits_summary
    from generations.models import Generation

    on_plan(owner, quota_mb=1)
    upload(project, text_of_size(MIB), "a.txt")  # exactly full
    refused = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                     "inputs": {"prompt": "x"}}, format="json")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded" and error["storage"] == {"used": MIB, "limit": MIB}
    assert "Storage full" in error["message"]
    assert not Generation.objects.exists() and credits_summary(user=owner).held == 0


def test_the_storage_endpoint_reports_use_limit_and_each_project(owner: Any, owner_api: Any, outsider: Any,
                                                                 project: Any) -> None:
    on_plan(owner, quota_mb=10)
    empty = project_create(owner=owner, name="Empty")
    upload(project, text_of_size(3000), "a.txt")
    upload(project_create(owner=outsider, name="Theirs"), text_of_size(9000), "b.txt")
    body = owner_api.get("/api/v1/storage").json()
    assert body == {
        "used": 3000, "limit": 10 * MIB, "available": 10 * MIB - 3000, "over_quota": False, "percent": 0,
        "plan": {"code": "tight", "name": "Tight"},
        "projects": [{"id": str(project.pk), "name": "Trailer", "used": 3000, "assets": 1},
                     {"id": str(empty.pk), "name": "Empty", "used": 0, "assets": 0}],
    }
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/storage").status_code == 401


def test_the_storage_endpoint_runs_the_same_queries_however_much_is_stored(owner: Any, owner_api: Any,
                                                                          project: Any) -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert owner_api.get("/api/v1/storage").status_code == 200
        return len(ctx.captured_queries)

    upload(project, text_of_size(10), "a.txt")
    count()  # the first call of a token may record its use
    few = count()
    for i in range(5):
        other = project_create(owner=owner, name=f"P{i}")
        upload(other, text_of_size(10 + i), f"{i}.txt")
    assert count() == few


def test_the_account_page_shows_storage_used_and_the_limit(client: Any, owner: Any, project: Any) -> None:
    on_plan(owner, quota_mb=2)
    upload(project, text_of_size(MIB), "a.txt")
    client.force_login(owner)
    page = client.get(reverse("studio:account")).text
    assert 'id="storage-card"' in page
    assert "<strong>1.0\xa0MB</strong> used of 2.0\xa0MB (Tight plan)" in page
    assert 'value="50"' in page and "Trailer" in page


def test_the_web_uploader_says_the_storage_is_full(client: Any, owner: Any, project: Any) -> None:
    on_plan(owner, quota_mb=0, code="zero")
    client.force_login(owner)
    response = client.post(reverse("studio:asset-upload", kwargs={"project_id": project.pk}),
                           {"file": named(png_bytes(), "a.png")}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert response.json()["error"]["storage"]["limit"] == 0
    assert not Asset.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_uploads_racing_for_the_last_space_cannot_both_pass(owner: Any, project: Any, settings: Any) -> None:
    """Both pass the early check (nothing stored yet), both write their file; the lock on the owner's
    row makes the second re-count after the first commits, and it is refused and its file deleted."""
    from billing.models import CreditPack
    from billing.seed import seed_defaults

    seed_defaults(Plan, CreditPack)
    on_plan(owner, quota_mb=1)
    upload(project, text_of_size(MIB - 3000), "base.txt")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    import assets.uploads.quota as quota

    real_reserve = quota.quota_reserve

    def reserve_together(**kwargs: Any) -> None:
        barrier.wait(timeout=10)  # both uploads are past the early check and have written their files
        real_reserve(**kwargs)

    quota.quota_reserve = reserve_together
    try:
        def attempt(name: str) -> None:
            try:
                upload(project, text_of_size(2000), name)
                outcomes.append("stored")
            except QuotaExceeded:
                outcomes.append("refused")
            finally:
                connection.close()

        threads = [threading.Thread(target=attempt, args=(f"{i}.txt",)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        quota.quota_reserve = real_reserve
    assert sorted(outcomes) == ["refused", "stored"]
    assert storage_used(owner_id=owner.pk) == MIB - 1000
    assert len(media_files(settings)) == 2  # base.txt and the winner; the loser's file was deleted
