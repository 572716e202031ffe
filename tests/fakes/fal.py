"""A loopback fake of fal.ai: the queue (queue.fal.run), storage tokens (rest.fal.ai), the v3 CDN upload
and file host (v3.fal.media) and the webhook JWKS, all on one FakeServer, speaking the wire protocol summarised
in docs/providers/fal.md ("The wire protocol", §1.x) as fal-client 1.0.3 expects it.

Over 400 lines as one module: one handler serves the queue, storage, CDN and JWKS from one shared state.

Run it over TLS: `with FalFakeServer(ca=LocalCA(...)) as server:` (or `FakeServer(FalFake, ca=...)`
followed by `fal_fake_setup(server)`). Tests script it through `server.state`:

    keys             API keys accepted (default {"test-key"})
    queue_polls      status polls a new job spends IN_QUEUE (positions count down to 0; default 1)
    progress_polls   status polls it then spends IN_PROGRESS, one new log line each (default 2)
    outcomes         per-submit outcomes, popped in order (default success), see `outcome_*` below
    fail_submit / fail_status / fail_result / fail_token
                     scripted HTTP failures for the next calls: {"status", "body", "headers"}
    signing_key      the Ed25519 key webhooks are signed with; jwks_keys: the keys the JWKS serves

Outcome options (keys of an `outcomes` entry, besides `kind`), for how a job meets a cancel and what
its result looks like:

    after_cancel     what the app does with a cancel of a running request, after fal's 202
                     CANCELLATION_REQUESTED: "stop" (default: the request completes as client_cancelled)
                     or "finish" (it ignores the signal, runs its remaining progress polls and completes
                     normally, outputs billed)
    completes_before_cancel
                     the app finishes while the cancel is in flight: the cancel answers 400
                     ALREADY_COMPLETED and the result waits at the response URL
    bare_files       output Files carry only `url` and `file_size` (no content_type, no file_name)
    opaque_urls      output URLs end in an id with no file extension

It records: server.requests (every request), state["jobs"] (id → input, webhook, outputs),
state["canceled"] (ids whose cancel was accepted), state["cancel_answers"] (id → the cancel's HTTP
status, in order), state["uploads"] (CDN uploads: url → bytes).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import threading
import time
import uuid
import wave
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from tests.fakes.server import FakeServer, JSONHandler, LocalCA

# Which result field each endpoint answers with, per the model's output schema on fal.ai/models/<id>/api.
RESULT_SHAPES: dict[str, str] = {
    "fal-ai/flux/schnell": "images",
    "fal-ai/flux/dev": "images",
    "fal-ai/flux-pro/kontext": "images",
    "fal-ai/flux-pro/v1/fill": "images",
    "fal-ai/clarity-upscaler": "image",
    "fal-ai/bria/background/remove": "image",
    "fal-ai/kling-video/v1.6/standard/text-to-video": "video",
    "fal-ai/kling-video/v1.6/standard/image-to-video": "video",
    "fal-ai/trellis": "model_mesh",
    "fal-ai/kokoro/american-english": "audio",
}


# --- tiny but real files (our content sniffing must accept them) -------------------------------------

def make_image(fmt: str = "PNG", size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    image = Image.new("RGB", size, ((seed * 37) % 256, 120, 200))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def make_mp4(seed: int = 0) -> bytes:
    """ftyp + free + mdat: an ISO-BMFF box sequence that sniffs as video/mp4."""
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 0x200, b"isom", b"mp41")
    free = struct.pack(">I4s", 8, b"free")
    payload = bytes([seed % 256]) * 16
    mdat = struct.pack(">I4s", 8 + len(payload), b"mdat") + payload
    return ftyp + free + mdat


def make_wav(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(24000)
        out.writeframes(bytes([seed % 256, 0]) * 240)
    return buffer.getvalue()


def make_glb() -> bytes:
    """A glTF 2.0 binary container with one JSON chunk (https://registry.khronos.org/glTF/ §4.4)."""
    doc = json.dumps({"asset": {"version": "2.0", "generator": "studio fal fake"}}).encode()
    doc += b" " * (-len(doc) % 4)
    chunk = struct.pack("<I4s", len(doc), b"JSON") + doc
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunk)) + chunk


# --- the handler ----------------------------------------------------------------------------------

class FalFake(JSONHandler):
    # Headers and body go out in separate writes; without this, Nagle's algorithm and the client's
    # delayed ACK add ~40 ms to every response on loopback.
    disable_nagle_algorithm = True

    def _begin(self) -> None:
        # One handler instance serves every request on a keep-alive connection, and JSONHandler.body is
        # a cached_property: forget the previous request's body so this one's is read off the socket.
        self.__dict__.pop("body", None)
        self.record()

    def _base(self) -> str:
        return self.server.state["base_url"]

    def _authorized(self) -> bool:
        # `Authorization: Key <FAL_KEY>` (reference §1.1; fal_client/auth.py AuthCredentials).
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme == "Key" and token in self.server.state["keys"]:
            return True
        # Request errors carry a string `detail` (https://docs.fal.ai/documentation/model-apis/request-errors).
        # The wording is illustrative, not captured from fal.
        self.send_json(401, {"detail": "No user found for Key ID and Secret"})
        return False

    def _scripted_failure(self, name: str) -> bool:
        queue = self.server.state.get(f"fail_{name}") or []
        if not queue:
            return False
        failure = queue.pop(0)
        body = failure.get("body", {"detail": "Internal Server Error"})
        headers = failure.get("headers", {})
        if isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
            self.send_bytes(failure["status"], data, "text/html", headers)
        else:
            self.send_json(failure["status"], body, headers)
        return True

    # routing -----------------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        self._begin()
        path = urlsplit(self.path).path
        if path == "/storage/auth/token":
            self._storage_token()
        elif path == "/files/upload":
            self._cdn_upload()
        elif path == "/storage/upload/initiate":
            self._storage_initiate()
        else:
            self._submit()

    def do_GET(self) -> None:  # noqa: N802
        self._begin()
        path = urlsplit(self.path).path
        if path == "/.well-known/jwks.json":
            self._jwks()
        elif path.startswith("/files/"):
            self._serve_file(path)
        elif path.endswith("/status") and "/requests/" in path:
            self._status(path.split("/")[-2])
        elif "/requests/" in path:
            self._result(path.split("/")[-1])
        else:
            self.send_json(404, {"detail": "Not Found"})

    def do_PUT(self) -> None:  # noqa: N802
        self._begin()
        path = urlsplit(self.path).path
        if path.endswith("/cancel") and "/requests/" in path:
            self._cancel(path.split("/")[-2])
        elif path.startswith("/files/gcs/"):
            self.server.state["uploads"][self._base() + path.replace("/files/gcs/", "/files/uploads/", 1)] = self.body
            self.send_json(200, {})
        else:
            self.send_json(404, {"detail": "Not Found"})

    # queue -------------------------------------------------------------------------------------------

    def _submit(self) -> None:
        # POST {queue}/{owner}/{alias}[/{path}][?fal_webhook=<url>] (reference §1.2).
        if not self._authorized() or self._scripted_failure("submit"):
            return
        parts = urlsplit(self.path)
        endpoint = parts.path.strip("/")
        owner, alias = endpoint.split("/")[:2]
        request_id = str(uuid.uuid4())
        state = self.server.state
        outcomes = state.get("outcomes") or []
        # The request URLs use only {owner}/{alias}; the sub-path is dropped (SyncRequestHandle.from_request_id).
        base = f"{self._base()}/{owner}/{alias}/requests/{request_id}"
        state["jobs"][request_id] = {
            "endpoint": endpoint, "input": self.json_body(), "polls": 0, "state": "IN_QUEUE", "logs": [],
            "webhook": (parse_qs(parts.query).get("fal_webhook") or [None])[0],
            "outcome": outcomes.pop(0) if outcomes else {"kind": "success"},
            "headers": dict(self.headers.items()), "result": None, "outputs": [],
        }
        # The SDK needs all four URLs (SyncClient.submit); fal also sends status/queue_position (fal-js types.ts).
        self.send_json(200, {"request_id": request_id, "response_url": base, "status_url": base + "/status",
                             "cancel_url": base + "/cancel", "status": "IN_QUEUE",
                             "queue_position": state["queue_polls"]})

    def _advance(self, job: dict[str, Any]) -> None:
        """One status poll moves a job along IN_QUEUE → IN_PROGRESS → COMPLETED
        (https://docs.fal.ai/documentation/model-apis/inference/queue)."""
        if job["state"] == "COMPLETED":
            return
        job["polls"] += 1
        queue_polls, progress_polls = self.server.state["queue_polls"], self.server.state["progress_polls"]
        if job["polls"] <= queue_polls:
            job["state"] = "IN_QUEUE"
        elif job["polls"] <= queue_polls + progress_polls:
            job["state"] = "IN_PROGRESS"
            step = job["polls"] - queue_polls
            job["logs"].append({"message": f"step {step}/{progress_polls}", "level": "INFO", "source": "USER",
                                "timestamp": datetime.now(UTC).isoformat()})
        else:
            job["state"] = "COMPLETED"

    def _status(self, request_id: str) -> None:
        # GET .../requests/{id}/status?logs=true|false (the SDK sends the literal strings, reference §1.2).
        if not self._authorized() or self._scripted_failure("status"):
            return
        job = self.server.state["jobs"].get(request_id)
        if job is None:
            self.send_json(404, {"detail": f"Request {request_id} not found"})
            return
        self._advance(job)
        with_logs = parse_qs(urlsplit(self.path).query).get("logs", ["false"])[0] in ("true", "1")
        response_url = f"{self._base()}/{'/'.join(job['endpoint'].split('/')[:2])}/requests/{request_id}"
        if job["state"] == "IN_QUEUE":
            # queue_position is required for IN_QUEUE (_BaseRequestHandle._parse_status).
            position = max(0, self.server.state["queue_polls"] - job["polls"])
            self.send_json(200, {"status": "IN_QUEUE", "queue_position": position, "response_url": response_url})
            return
        # `logs` must be present (even null) for IN_PROGRESS and COMPLETED (_parse_status).
        logs = list(job["logs"]) if with_logs else None
        if job["state"] == "IN_PROGRESS":
            self.send_json(200, {"status": "IN_PROGRESS", "logs": logs, "response_url": response_url})
            return
        body: dict[str, Any] = {"status": "COMPLETED", "logs": logs, "metrics": {"inference_time": 0.42},
                                "response_url": response_url}
        outcome = job["outcome"]
        if job.get("canceled"):
            # Assumption: a canceled request completes with a client_cancelled request error (error
            # type list at https://docs.fal.ai/documentation/model-apis/request-errors).
            body.update(error="Request was cancelled", error_type="client_cancelled")
        elif outcome["kind"] != "success":
            # A COMPLETED status may carry error/error_type: the run failed (reference §1.2).
            body["error"] = f"Invalid status code: {outcome['status']}"
            if outcome.get("error_type"):
                body["error_type"] = outcome["error_type"]
        self.send_json(200, body)

    def _result(self, request_id: str) -> None:
        # GET .../requests/{id}: the model's output JSON, or its error body with the error status.
        if not self._authorized() or self._scripted_failure("result"):
            return
        job = self.server.state["jobs"].get(request_id)
        if job is None:
            self.send_json(404, {"detail": f"Request {request_id} not found"})
            return
        if job["state"] != "COMPLETED":
            self.send_json(400, {"detail": "Request is still in progress"})
            return
        outcome = job["outcome"]
        if job.get("canceled"):
            self.send_json(400, {"detail": "Request was cancelled", "error_type": "client_cancelled"},
                           {"X-Fal-Error-Type": "client_cancelled"})
            return
        if outcome["kind"] == "model_error":
            # Model errors: `detail` is a list of {loc, msg, type, url} (https://docs.fal.ai/errors).
            self.send_json(outcome["status"], {"detail": outcome["detail"]}, outcome.get("headers"))
            return
        if outcome["kind"] == "request_error":
            # Request errors: string detail + error_type, also in X-Fal-Error-Type (request-errors doc).
            self.send_json(outcome["status"], {"detail": outcome["detail"], "error_type": outcome["error_type"]},
                           {"X-Fal-Error-Type": outcome["error_type"], "x-fal-request-id": request_id})
            return
        self.send_json(200, self._build_result(request_id, job))

    def _build_result(self, request_id: str, job: dict[str, Any]) -> dict[str, Any]:
        if job["result"] is not None:
            return job["result"]
        arguments = job["input"] or {}
        field = RESULT_SHAPES.get(job["endpoint"], "images")
        sync = bool(arguments.get("sync_mode"))
        outcome = job["outcome"]

        def file(data: bytes, content_type: str, name: str, **extra: Any) -> dict[str, Any]:
            job["outputs"].append(data)
            if sync:
                # sync_mode: "the media will be returned as a data URI" (per-model schemas, reference §1.3).
                url = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
            else:
                # fal CDN URLs usually end in a file name, but nothing promises an extension
                # (e.g. https://v3.fal.media/files/<bucket>/<id>); `opaque_urls` serves them without one.
                path_name = uuid.uuid4().hex if outcome.get("opaque_urls") else name
                url = f"{self._base()}/files/out/{request_id}/{path_name}"
                self.server.state["files"][urlsplit(url).path] = (data, content_type)
            if outcome.get("bare_files"):
                # Only `url` is sure to be there: the webhooks doc's result example has a File with no
                # file_name or file_size (https://docs.fal.ai/model-endpoints/webhooks, reference §1.4),
                # and no fal doc promises content_type on every model's output either.
                return {"url": url, "file_size": len(data)}
            return {"url": url, "content_type": content_type, "file_name": name, "file_size": len(data), **extra}

        result: dict[str, Any]
        if field == "images":
            fmt = "PNG" if arguments.get("output_format") == "png" else "JPEG"
            mime = f"image/{fmt.lower()}"
            count = int(arguments.get("num_images") or 1)
            images = [file(make_image(fmt, seed=i), mime, f"image-{i}.{'png' if fmt == 'PNG' else 'jpg'}",
                           width=64, height=48) for i in range(count)]
            # Shape from the webhook doc example (https://docs.fal.ai/model-endpoints/webhooks).
            result = {"images": images, "seed": arguments.get("seed", 42), "has_nsfw_concepts": [False] * count,
                      "prompt": arguments.get("prompt", ""), "timings": {"inference": 0.42}}
        elif field == "image":
            result = {"image": file(make_image("PNG"), "image/png", "image.png", width=64, height=48)}
        elif field == "video":
            result = {"video": file(make_mp4(), "video/mp4", "output.mp4")}
        elif field == "audio":
            result = {"audio": file(make_wav(), "audio/wav", "speech.wav")}
        elif field == "model_mesh":
            # fal serves GLBs as application/octet-stream with a .glb file name.
            result = {"model_mesh": file(make_glb(), "application/octet-stream", "model.glb"),
                      "timings": {"prepare": 0.1, "generation": 0.3}}
        else:
            raise AssertionError(f"unknown result field {field}")
        job["result"] = result
        return result

    def _cancel(self, request_id: str) -> None:
        # PUT .../requests/{id}/cancel: 202 CANCELLATION_REQUESTED, 400 ALREADY_COMPLETED, 404 NOT_FOUND
        # (https://fal.ai/docs/inference-api/queue/cancel). A queued request is removed; a running one
        # only gets a cancellation signal, and "the model app decides how to stop the work"
        # (https://docs.fal.ai/documentation/development/handle-cancellations): it may finish anyway.
        if not self._authorized():
            return
        state = self.server.state
        job = state["jobs"].get(request_id)
        if job is None:
            self.send_json(404, {"status": "NOT_FOUND"})
            return
        answers = state["cancel_answers"].setdefault(request_id, [])
        if job["outcome"].get("completes_before_cancel") and job["state"] != "COMPLETED":
            # The app finished while our cancel was on its way: fal keeps the result at the response URL.
            job["state"] = "COMPLETED"
        if job["state"] == "COMPLETED":
            answers.append(400)
            self.send_json(400, {"status": "ALREADY_COMPLETED"})
            return
        answers.append(202)
        state["canceled"].append(request_id)
        if job["state"] == "IN_QUEUE":
            # Removed from the queue: it never runs (handle-cancellations, above).
            job["canceled"] = True
            job["state"] = "COMPLETED"
        elif job["outcome"].get("after_cancel", "stop") == "stop":
            # The app honours the signal: its request completes as cancelled at once.
            job["canceled"] = True
            job["state"] = "COMPLETED"
        else:
            # "finish": the app ignores the signal and runs its remaining progress polls to a normal
            # result, which fal bills (https://fal.ai/docs/documentation/model-apis/pricing).
            job["cancel_requested"] = True
        self.send_json(202, {"status": "CANCELLATION_REQUESTED"})

    # storage -----------------------------------------------------------------------------------------

    def _storage_token(self) -> None:
        # POST rest.fal.ai/storage/auth/token?storage_type=fal-cdn-v3 with {} (CDNTokenManager, reference §1.3).
        if not self._authorized() or self._scripted_failure("token"):
            return
        expires = datetime.now(UTC) + timedelta(hours=1)
        token = "cdn-" + uuid.uuid4().hex
        self.server.state["cdn_tokens"].add(token)
        self.send_json(200, {"token": token, "token_type": "Bearer", "base_url": self._base(),
                             "expires_at": expires.isoformat()})

    def _cdn_upload(self) -> None:
        # POST v3.fal.media/files/upload, raw bytes, `Authorization: <token_type> <token>`, X-Fal-File-Name.
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.server.state["cdn_tokens"]:
            self.send_json(401, {"detail": "Invalid CDN token"})
            return
        name = self.headers.get("X-Fal-File-Name") or "upload.bin"
        url = f"{self._base()}/files/uploads/{uuid.uuid4().hex}/{name}"
        self.server.state["uploads"][url] = self.body
        self.server.state["files"][urlsplit(url).path] = (self.body, self.headers.get("Content-Type", ""))
        self.send_json(200, {"access_url": url})

    def _storage_initiate(self) -> None:
        # Fallback repository "fal": initiate → {upload_url, file_url}, then PUT upload_url (reference §1.3).
        if not self._authorized():
            return
        body = self.json_body() or {}
        key = f"{uuid.uuid4().hex}/{body.get('file_name', 'upload.bin')}"
        self.send_json(200, {"upload_url": f"{self._base()}/files/gcs/{key}",
                             "file_url": f"{self._base()}/files/uploads/{key}"})

    def _serve_file(self, path: str) -> None:
        found = self.server.state["files"].get(path)
        if found is None:
            self.send_json(404, {"detail": "Not Found"})
            return
        data, content_type = found
        self.send_bytes(200, data, content_type or "application/octet-stream")

    # webhooks ----------------------------------------------------------------------------------------

    def _jwks(self) -> None:
        # An OKP/Ed25519 JWK set with base64url `x` (reference §1.4).
        self.send_json(200, {"keys": [public_jwk(key) for key in self.server.state["jwks_keys"]]})


def public_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
            "use": "sig", "kid": hashlib.sha256(raw).hexdigest()[:16]}


class FalFakeServer(FakeServer):
    """FakeServer(FalFake) with its state set up on start, and a short shutdown poll: serve_forever's
    default 0.5 s poll interval would add half a second to every test's teardown."""

    def __init__(self, *, ca: LocalCA | None = None) -> None:
        super().__init__(FalFake, ca=ca)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self) -> FalFakeServer:
        super().__enter__()
        fal_fake_setup(self)
        return self


def fal_fake_setup(server: FakeServer) -> FakeServer:
    signing_key = Ed25519PrivateKey.generate()
    server.state.update(
        base_url=server.url, keys={"test-key"}, queue_polls=1, progress_polls=2, outcomes=[], jobs={},
        files={}, uploads={}, cdn_tokens=set(), canceled=[], cancel_answers={}, fail_submit=[], fail_status=[], fail_result=[],
        fail_token=[], signing_key=signing_key, jwks_keys=[signing_key], user_id="fal-user-7",
    )
    return server


def outcome_model_error(msg: str, *, type_: str = "value_error", loc: list[str] | None = None,
                        status: int = 422, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"kind": "model_error", "status": status, "headers": headers or {},
            "detail": [{"loc": loc or ["body"], "msg": msg, "type": type_,
                        "url": f"https://docs.fal.ai/errors#{type_}"}]}


def outcome_request_error(detail: str, *, error_type: str, status: int) -> dict[str, Any]:
    return {"kind": "request_error", "status": status, "detail": detail, "error_type": error_type}


def webhook_delivery(server: FakeServer, request_id: str, *, status: str = "OK", payload: Any = None,
                     error: str | None = None) -> bytes:
    """The body fal POSTs to `fal_webhook` (https://docs.fal.ai/model-endpoints/webhooks)."""
    body: dict[str, Any] = {"request_id": request_id, "gateway_request_id": request_id, "status": status,
                            "payload": payload}
    if error is not None:
        body["error"] = error
    return json.dumps(body).encode()


def sign_webhook(server: FakeServer, body: bytes, *, request_id: str, key: Ed25519PrivateKey | None = None,
                 timestamp: int | None = None) -> dict[str, str]:
    """Headers for a webhook signed as fal does: Ed25519 over
    "\\n".join([request_id, user_id, timestamp, sha256_hex(body)]), hex-encoded (reference §1.4)."""
    key = key or server.state["signing_key"]
    user_id = server.state["user_id"]
    ts = str(int(time.time()) if timestamp is None else timestamp)
    message = "\n".join([request_id, user_id, ts, hashlib.sha256(body).hexdigest()]).encode()
    return {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": ts, "X-Fal-Webhook-Signature": key.sign(message).hex()}
