"""Asset storage on S3, against moto's S3 server running on loopback, driven through boto3 and
django-storages exactly as production is configured (config/settings/base.py run with S3 env vars).

moto's server does not check presigned URLs: it serves them whatever their signature or age. Real S3
refuses a tampered or expired one, and that is what these tests need to see, so the server is
wrapped in `PresignChecks`, which verifies the SigV4 query signature and X-Amz-Expires as S3 does
(AWS docs, "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)")."""

from __future__ import annotations

import hashlib
import hmac
import io
import runpy
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import ThreadedMotoServer
from PIL import Image
from werkzeug.serving import make_server

from assets.library.organise import asset_trash, assets_delete, assets_purge_trash
from assets.models import Asset
from assets.services import asset_create_from_bytes
from assets.storage import content_disposition, safe_mime
from orchestration.projects import project_delete

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY, SECRET_KEY, REGION = "AKIDSTUDIOTEST", "studio-test-secret", "us-east-1"


class PresignChecks:
    """WSGI middleware: a GET carrying X-Amz-Signature must be signed with our secret and unexpired."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        raw_query = environ.get("QUERY_STRING", "")
        params = parse_qsl(raw_query, keep_blank_values=True)
        if any(k == "X-Amz-Signature" for k, _ in params):
            refusal = self.refusal(environ, params)
            if refusal:
                code, message = refusal
                body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
                        f"<Message>{message}</Message></Error>").encode()
                start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                                 ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)

    @staticmethod
    def refusal(environ: dict[str, Any], params: list[tuple[str, str]]) -> tuple[str, str] | None:
        query = dict(params)
        amz_date = query["X-Amz-Date"]
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if datetime.now(UTC) > signed_at + timedelta(seconds=int(query["X-Amz-Expires"])):
            return "AccessDenied", "Request has expired"
        key_id, day, region, service, _ = query["X-Amz-Credential"].split("/")
        if key_id != ACCESS_KEY:
            return "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        enc = lambda s: quote(s, safe="-_.~")  # noqa: E731
        canonical_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params) if k != "X-Amz-Signature")
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ["PATH_INFO"])
        signed_headers = query["X-Amz-SignedHeaders"].split(";")
        headers = "".join(f"{h}:{environ['HTTP_' + h.upper().replace('-', '_')].strip()}\n" for h in signed_headers)
        canonical = "\n".join([environ["REQUEST_METHOD"], raw_uri.split("?", 1)[0], canonical_query, headers,
                               ";".join(signed_headers), "UNSIGNED-PAYLOAD"])
        scope = f"{day}/{region}/{service}/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{SECRET_KEY}".encode()
        for part in (day, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(),
                                   query["X-Amz-Signature"]):
            return "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."
        return None


class S3Server(ThreadedMotoServer):
    """moto's threaded S3 server with presigned URLs checked as S3 checks them."""

    def _server_entry(self) -> None:
        app = PresignChecks(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True)
        self._server_ready_event.set()
        self._server.serve_forever()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = S3Server(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class S3:
    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint, self.bucket = endpoint, bucket
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                                   aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey"):
                return None
            raise

    def keys(self) -> list[str]:
        return [o["Key"] for o in self.client.list_objects_v2(Bucket=self.bucket).get("Contents", [])]


def s3_settings(monkeypatch: pytest.MonkeyPatch, endpoint: str, bucket: str, **env: str) -> dict[str, Any]:
    """STORAGES as config/settings/base.py builds it from the environment production would have."""
    for name, value in {"AWS_STORAGE_BUCKET_NAME": bucket, "AWS_S3_ENDPOINT_URL": endpoint,
                        "AWS_S3_REGION_NAME": REGION, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                        "AWS_SECRET_ACCESS_KEY": SECRET_KEY, **env}.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "config" / "settings" / "base.py"))["STORAGES"]


@pytest.fixture
def s3(s3_endpoint: str, settings: Any, monkeypatch: pytest.MonkeyPatch) -> S3:
    bucket = f"studio-{uuid.uuid4().hex[:12]}"
    store = S3(s3_endpoint, bucket)
    store.client.create_bucket(Bucket=bucket)
    # Assigning STORAGES resets Django's storage handler and default_storage (its setting_changed receiver).
    settings.STORAGES = s3_settings(monkeypatch, s3_endpoint, bucket)
    return store


def png(name_color: tuple[int, int, int] = (40, 90, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 16), name_color).save(out, "PNG")
    return out.getvalue()


def test_settings_switch_media_to_s3_with_private_presigned_objects(s3: S3) -> None:
    from assets.storage import MediaS3Storage

    field_storage = Asset._meta.get_field("file").storage
    # Asset's FileField holds the lazy default_storage itself, not a backend bound at import: switching
    # STORAGES switches the models, in tests as in production.
    assert field_storage is default_storage and isinstance(field_storage, MediaS3Storage)
    assert (default_storage.bucket_name, default_storage.endpoint_url) == (s3.bucket, s3.endpoint)
    assert default_storage.default_acl is None and default_storage.querystring_auth is True
    assert default_storage.custom_domain is None and default_storage.signature_version == "s3v4"
    assert default_storage.querystring_expire == 3600 and default_storage.max_memory_size == 8 * 1024 * 1024


def test_an_upload_through_the_api_lands_private_in_the_bucket_with_our_sniffed_type(
        s3: S3, owner_api: Any, project: Any) -> None:
    data = png()
    # The client claims HTML; the sniffer says PNG, and PNG is what the object is stored as.
    upload = SimpleUploadedFile("poster.png", data, content_type="text/html")
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    asset = Asset.objects.get(pk=response.json()["id"])
    head = s3.head(asset.file.name)
    assert head is not None and head["ContentType"] == "image/png" and head["ContentLength"] == len(data)
    assert head["ContentDisposition"] == "attachment"
    assert s3.client.get_object(Bucket=s3.bucket, Key=asset.file.name)["Body"].read() == data
    # Private: the object's plain URL, unsigned, is refused.
    assert httpx.get(f"{s3.endpoint}/{s3.bucket}/{asset.file.name}").status_code == 403


def test_a_text_upload_is_stored_as_plain_text_whatever_the_client_said(s3: S3, owner_api: Any, project: Any) -> None:
    upload = SimpleUploadedFile("notes.md", b"# Scene 1\nINT. HOUSE\n", content_type="text/html")
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    head = s3.head(Asset.objects.get(pk=response.json()["id"]).file.name)
    assert head is not None and head["ContentType"] == "text/plain"


def test_the_api_download_url_is_a_presigned_get_with_our_disposition_and_type(
        s3: S3, owner_api: Any, project: Any) -> None:
    data = png()
    asset = asset_create_from_bytes(project=project, data=data, name="Phare à l'aube « final ».png")
    url = owner_api.get(f"/api/v1/assets/{asset.pk}").json()["download_url"]
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert f"{parts.scheme}://{parts.netloc}" == s3.endpoint and parts.path == f"/{s3.bucket}/{asset.file.name}"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Expires"] == "3600"
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content == data
    assert fetched.headers["content-type"] == "image/png"
    disposition = fetched.headers["content-disposition"]
    assert disposition == ("attachment; filename=\"Phare a l'aube _ final _.png\"; "
                           "filename*=UTF-8''Phare%20%C3%A0%20l%27aube%20%C2%AB%20final%20%C2%BB.png")
    assert unquote(disposition.split("UTF-8''", 1)[1]) == "Phare à l'aube « final ».png"
    # The overrides are signed: asking for another type (HTML, say) breaks the signature.
    tampered = url.replace("response-content-type=image%2Fpng", "response-content-type=text%2Fhtml")
    assert tampered != url
    refused = httpx.get(tampered)
    assert refused.status_code == 403 and b"SignatureDoesNotMatch" in refused.content


def test_the_download_route_redirects_to_a_presigned_url_and_stays_404_for_outsiders(
        s3: S3, owner_api: Any, outsider_api: Any, project: Any) -> None:
    data = png()
    asset = asset_create_from_bytes(project=project, data=data, name="poster.png")
    response = owner_api.get(f"/api/v1/assets/{asset.pk}/download")
    assert response.status_code == 302 and response["Location"].startswith(f"{s3.endpoint}/{s3.bucket}/")
    fetched = httpx.get(response["Location"])
    assert fetched.content == data and fetched.headers["content-disposition"] == 'attachment; filename="poster.png"'
    inline = httpx.get(owner_api.get(f"/api/v1/assets/{asset.pk}/download?inline=1")["Location"])
    assert inline.headers["content-disposition"] == 'inline; filename="poster.png"'
    assert outsider_api.get(f"/api/v1/assets/{asset.pk}/download").status_code == 404
    # Embedding has to rewrite the bytes, so that download streams through us, from S3.
    embedded = owner_api.get(f"/api/v1/assets/{asset.pk}/download?embed=1")
    assert embedded.status_code == 200 and embedded["X-Content-Type-Options"] == "nosniff"
    with Image.open(io.BytesIO(b"".join(embedded.streaming_content))) as image:
        assert image.text["studio:recipe"].startswith("{")


def test_an_expired_presigned_url_is_refused(s3_endpoint: str, settings: Any, monkeypatch: pytest.MonkeyPatch,
                                             owner_api: Any, project: Any) -> None:
    bucket = f"studio-{uuid.uuid4().hex[:12]}"
    S3(s3_endpoint, bucket).client.create_bucket(Bucket=bucket)
    settings.STORAGES = s3_settings(monkeypatch, s3_endpoint, bucket, AWS_QUERYSTRING_EXPIRE="4")
    asset = asset_create_from_bytes(project=project, data=png(), name="poster.png")
    url = owner_api.get(f"/api/v1/assets/{asset.pk}").json()["download_url"]
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Expires"] == "4"
    assert httpx.get(url).status_code == 200
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    time.sleep(max(0.0, (signed_at + timedelta(seconds=5) - datetime.now(UTC)).total_seconds()))
    expired = httpx.get(url)
    assert expired.status_code == 403 and b"Request has expired" in expired.content


def test_deleting_an_asset_removes_its_objects_once_committed(
        s3: S3, project: Any, django_capture_on_commit_callbacks: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=png(), name="poster.png")
    asset.thumb_small.save("thumb_small.webp", ContentFile(b"RIFF\x00\x00\x00\x00WEBPVP8 "), save=True)
    names = [asset.file.name, asset.thumb_small.name]
    assert all(s3.head(n) for n in names) and s3.head(names[1])["ContentType"] == "image/webp"
    with django_capture_on_commit_callbacks(execute=True):
        assets_delete([asset])
    assert [s3.head(n) for n in names] == [None, None]


def test_deleting_a_project_and_purging_the_trash_remove_objects(
        s3: S3, owner: Any, project: Any, django_capture_on_commit_callbacks: Any) -> None:
    from projects.services import project_create

    kept = asset_create_from_bytes(project=project_create(owner=owner, name="Kept"), data=png(), name="kept.png")
    doomed = [asset_create_from_bytes(project=project, data=png((i, i, i)), name=f"{i}.png") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        project_delete(project=project)
    assert s3.keys() == [kept.file.name]

    asset_trash(user=owner, asset_id=kept.pk)
    Asset.objects.filter(pk=kept.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    with django_capture_on_commit_callbacks(execute=True):
        assert assets_purge_trash() == 1
    assert s3.keys() == [] and not Asset.objects.filter(pk__in=[a.pk for a in doomed]).exists()


def test_an_export_streams_files_from_s3(s3: S3, owner_api: Any, project: Any) -> None:
    import json
    import zipfile

    data = png()
    asset = asset_create_from_bytes(project=project, data=data, name="poster.png")
    script = asset_create_from_bytes(project=project, data=b"FADE IN:\n" * 100, name="scene.txt")
    gone = asset_create_from_bytes(project=project, data=png((1, 2, 3)), name="gone.png")
    s3.client.delete_object(Bucket=s3.bucket, Key=gone.file.name)  # removed behind our back
    response = owner_api.get(f"/api/v1/projects/{project.pk}/export?embed=1")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    rows = {r["id"]: r for r in json.loads(archive.read("metadata.json"))["assets"]}
    assert archive.read(rows[str(script.pk)]["path"]) == b"FADE IN:\n" * 100
    with Image.open(io.BytesIO(archive.read(rows[str(asset.pk)]["path"]))) as image:
        assert json.loads(image.text["studio:recipe"])["id"] == str(asset.pk)
    assert rows[str(gone.pk)]["missing"] is True and archive.read(rows[str(gone.pk)]["path"]) == b""


def test_media_files_are_never_served_by_django(client: Any, owner: Any, project: Any, settings: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=png(), name="poster.png")
    client.force_login(owner)
    for debug in (True, False):
        settings.DEBUG = debug
        assert client.get(f"{settings.MEDIA_URL}{asset.file.name}").status_code == 404


@pytest.mark.parametrize(("name", "inline", "expected"), [
    ("poster.png", False, 'attachment; filename="poster.png"'),
    ("poster.png", True, 'inline; filename="poster.png"'),
    ('say "hi"\\.png', False, "attachment; filename=\"say _hi__.png\"; filename*=UTF-8''say%20%22hi%22_.png"),
    ("100%.png", False, "attachment; filename=\"100_.png\"; filename*=UTF-8''100%25.png"),
    ("灯台.png", False, "attachment; filename=\"download.png\"; filename*=UTF-8''%E7%81%AF%E5%8F%B0.png"),
    ("evil\r\nSet-Cookie: x=1.png", False, 'attachment; filename="evilSet-Cookie: x=1.png"'),
    ("photo\u202egnp.exe", False, "attachment; filename=\"photognp.exe\""),
    ("../../etc/passwd", False, 'attachment; filename="_.._etc_passwd"'),
])
def test_content_disposition_is_a_safe_rfc_6266_header(name: str, inline: bool, expected: str) -> None:
    assert content_disposition(name, inline=inline) == expected


def test_only_media_and_plain_text_types_are_ever_sent() -> None:
    assert safe_mime("image/png") == "image/png" and safe_mime("text/plain") == "text/plain"
    for risky in ("text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/javascript",
                  "text/html; charset=utf-8", "", "IMAGE/SVG+XML"):
        assert safe_mime(risky) == "application/octet-stream"
