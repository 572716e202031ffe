"""A loopback Replicate: the HTTP API the `replicate` SDK (1.0.7) speaks, and the file host its outputs
live on (replicate.delivery in real life), served together over TLS by one FakeServer.

Over 400 lines as one module: one handler serves every route from one shared state, as Replicate does.

Sources for each behaviour are cited beside it: the HTTP reference (https://replicate.com/docs/reference/http),
the SDK source (replicate/{client,prediction,model,file,webhook,exceptions}.py), and
docs/providers/replicate.md, "The wire protocol" ("ref §2.x").

Scripting, through `server.state` (see `ReplicateFake.install`):

    state["tokens"]            accepted API tokens (default {"test-key"})
    state["errors"]            [{"on": "create"|"get"|"cancel"|"files"|"account", "status": 429,
                                 "detail": "...", "title": "...", "headers": {"Retry-After": "2"}}, ...]
                               each answers one matching request, in order, then is used up
    state["plan"]              how the next predictions run (merged over DEFAULT_PLAN):
        starting_polls          GETs that still say "starting" (queued / cold boot)
        processing_polls        GETs that say "processing", one tqdm step of logs each
        outcome                 "succeeded" | "failed"
        error                   the `error` text of a failed prediction
        predict_time            metrics.predict_time on the terminal prediction
        data_uri                outputs as data: URIs instead of https URLs
        num_outputs             how many files a list-output model returns (default: input num_outputs)
        bar_desc                a tqdm description before each progress bar ("Sampling" prints
                                "Sampling:  50%|█████     | 2/4 [...]"), as diffusers pipelines print them
        bar_redraws             tqdm redraws per processing poll, each ending in "\r" as tqdm redraws a
                                bar in place (default 1, ending in "\n")
    state["versions"]          version id → "owner/name", for community models created by version
    state["webhook_secret"]    "whsec_<base64>", for GET /v1/webhooks/default/secret and signing
    state["predictions"]       id → the prediction as the fake holds it (read it in tests)
    state["files"]             path → (bytes, content type) served under /delivery/ (outputs) and
                               uploaded through /v1/files
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import secrets
import struct
import threading
import time
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from tests.fakes.server import JSONHandler

DEFAULT_PLAN: dict[str, Any] = {
    "starting_polls": 1,
    "processing_polls": 2,
    "outcome": "succeeded",
    "error": None,
    "predict_time": 2.5,
    "data_uri": False,
    "num_outputs": None,
    "bar_desc": "",
    "bar_redraws": 1,
}

# What each model returns, as its real output schema has it: "list" (flux-schnell's num_outputs),
# "single" (one URI), or an object of named files (firtoz/trellis). Output files are made in real
# formats, because the studio sniffs every stored file by its bytes.
MODELS: dict[str, dict[str, Any]] = {
    "black-forest-labs/flux-schnell": {"shape": "list", "ext": "webp", "required": ["prompt"]},
    "black-forest-labs/flux-1.1-pro": {"shape": "single", "ext": "webp", "required": ["prompt"]},
    "nightmareai/real-esrgan": {"shape": "single", "ext": "png", "required": ["image"]},
    "cjwbw/rembg": {"shape": "single", "ext": "png", "required": ["image"]},
    "arielreplicate/robust_video_matting": {"shape": "single", "ext": "mp4", "required": ["input_video"]},
    "firtoz/trellis": {"shape": {"model_file": "glb", "color_video": None, "gaussian_ply": None},
                       "required": ["images"]},
    "minimax/video-01-live": {"shape": "single", "ext": "mp4", "required": ["prompt", "first_frame_image"]},
}
# --- real-format output bytes ------------------------------------------------------------------------

def image_bytes(fmt: str = "png", color: str = "orange", size: tuple[int, int] = (48, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA" if fmt == "png" else "RGB", size, color).save(buf, {"jpg": "JPEG"}.get(fmt, fmt.upper()))
    return buf.getvalue()


def mp4_bytes() -> bytes:
    """A tiny ISO-BMFF file: ftyp (isom), free and an empty mdat box; enough for content sniffing."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41"
    ftyp = struct.pack(">I", len(ftyp) + 4) + ftyp
    free = struct.pack(">I", 8) + b"free"
    mdat = struct.pack(">I", 16) + b"mdat" + b"\x00" * 8
    return ftyp + free + mdat


def glb_bytes() -> bytes:
    """A minimal binary glTF 2.0: 12-byte header and one JSON chunk (a scene with no nodes)."""
    doc = json.dumps({"asset": {"version": "2.0", "generator": "replicate fake"}, "scenes": [{}],
                      "scene": 0}).encode()
    doc += b" " * (-len(doc) % 4)  # chunks are 4-byte aligned, JSON padded with spaces (glTF 2.0 §4.4)
    chunk = struct.pack("<I", len(doc)) + b"JSON" + doc
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunk)) + chunk


CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg", "mp4": "video/mp4",
                 "glb": "model/gltf-binary"}


def file_bytes(ext: str, seed: int) -> bytes:
    colors = ["orange", "teal", "purple", "gold"]
    if ext == "mp4":
        return mp4_bytes()
    if ext == "glb":
        return glb_bytes()
    return image_bytes(ext, colors[seed % len(colors)])


# --- webhook signing ---------------------------------------------------------------------------------

def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign_webhook(secret: str, body: str, *, msg_id: str = "msg_fake", timestamp: int | None = None) -> dict[str, str]:
    """The headers Replicate sends: HMAC-SHA256 over f"{id}.{timestamp}.{body}" keyed with the
    base64-decoded part of the secret after "whsec_", base64-encoded, as "v1,<sig>".
    https://replicate.com/docs/topics/webhooks/verify-webhook (and replicate/webhook.py validate)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    key = base64.b64decode(secret.split("_", 1)[1])
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(digest).decode()}


# --- the handler -------------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReplicateFake(JSONHandler):
    lock = threading.Lock()

    @staticmethod
    def install(state: dict[str, Any]) -> None:
        state.setdefault("tokens", {"test-key"})
        state.setdefault("errors", [])
        state.setdefault("plan", {})
        state.setdefault("predictions", {})
        state.setdefault("files", {})
        state.setdefault("versions", {})
        state.setdefault("webhook_secret", new_webhook_secret())

    # -- plumbing --

    def handle_one_request(self) -> None:
        # One handler instance serves every request of a keep-alive connection (the SDK's httpx
        # client reuses connections), but JSONHandler.body is a cached_property: forget the previous
        # request's body, or a second request on the connection would see the first one's.
        self.__dict__.pop("body", None)
        super().handle_one_request()

    @cached_property
    def body(self) -> bytes:
        # httpx streams file uploads with Transfer-Encoding: chunked (no Content-Length), as the SDK's
        # POST /v1/files does; read those to the end so the keep-alive connection stays in step.
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return super().body
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    @property
    def state(self) -> dict[str, Any]:
        self.install(self.server.state)
        return self.server.state

    @property
    def base(self) -> str:
        # The fake is its own file host; TLS, because the SDK only turns https:/data: strings into
        # FileOutput (helpers.transform_output) and our downloader only fetches https.
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def problem(self, status: int, detail: str, title: str = "", headers: dict[str, str] | None = None,
                **extra: Any) -> None:
        # Errors are RFC 7807 problem details (replicate/exceptions.py ReplicateError.from_response).
        body = {"type": f"https://replicate.com/docs/errors#{status}", "title": title or detail,
                "status": status, "detail": detail, **extra}
        self.send_bytes(status, json.dumps(body).encode(), "application/problem+json", headers)

    def scripted_error(self, on: str) -> bool:
        with self.lock:
            for index, error in enumerate(self.state["errors"]):
                if error.get("on", "create") == on:
                    del self.state["errors"][index]
                    break
            else:
                return False
        self.problem(error.get("status", 500), error.get("detail", "Internal server error"),
                     error.get("title", ""), error.get("headers"))
        return True

    def authorized(self) -> bool:
        # The SDK sends "Authorization: Bearer <token>" (client._build_httpx_client); docs also show
        # "Token <token>". A bad token gets 401 with this detail (HTTP reference, "Authentication").
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme in ("Bearer", "Token") and token in self.state["tokens"]:
            return True
        self.problem(401, "You did not pass a valid authentication token", "Unauthenticated")
        return False

    # -- routes --

    def do_GET(self) -> None:  # noqa: N802
        self.record()
        path = urlsplit(self.path).path
        if path.startswith("/delivery/"):
            return self.serve_file(path)
        if not self.authorized():
            return
        if path == "/v1/account":
            if self.scripted_error("account"):
                return
            # GET /v1/account (replicate/account.py): type, username, name, github_url.
            return self.send_json(200, {"type": "user", "username": "studio-test", "name": "Studio Test",
                                        "github_url": None})
        if path == "/v1/webhooks/default/secret":
            return self.send_json(200, {"key": self.state["webhook_secret"]})
        match = re.fullmatch(r"/v1/predictions/([a-z0-9]+)", path)
        if match:
            if self.scripted_error("get"):
                return
            return self.get_prediction(match.group(1))
        match = re.fullmatch(r"/v1/files/([a-z0-9]+)", path)
        if match and match.group(1) in self.state["files"]:
            data, content_type = self.state["files"][match.group(1)]
            return self.send_bytes(200, data, content_type)
        self.problem(404, "The requested resource could not be found.", "Not found")

    def do_POST(self) -> None:  # noqa: N802
        self.record()
        path = urlsplit(self.path).path
        if not self.authorized():
            return
        match = re.fullmatch(r"/v1/models/([^/]+)/([^/]+)/predictions", path)
        if match:
            # Official models: POST /v1/models/{owner}/{name}/predictions, body without `version`
            # (ref §2.2, captured); their predictions report version "hidden".
            if self.scripted_error("create"):
                return
            return self.create(f"{match.group(1)}/{match.group(2)}", "hidden")
        if path == "/v1/predictions":
            if self.scripted_error("create"):
                return
            version = str((self.json_body() or {}).get("version", ""))
            # `version` is a 64-hex id, or "owner/name:id" (ref §2.2).
            version_id = version.rsplit(":", 1)[-1]
            model = self.state["versions"].get(version_id) or (version.split(":", 1)[0] if ":" in version else "")
            if not model:
                return self.problem(422, "The specified version does not exist (or perhaps you don't have "
                                    "permission to use it?)", "Invalid version or not permitted")
            return self.create(model, version_id)
        match = re.fullmatch(r"/v1/predictions/([a-z0-9]+)/cancel", path)
        if match:
            if self.scripted_error("cancel"):
                return
            return self.cancel(match.group(1))
        if path == "/v1/files":
            if self.scripted_error("files"):
                return
            return self.upload()
        self.problem(404, "The requested resource could not be found.", "Not found")

    # -- predictions --

    def create(self, model: str, version: str) -> None:
        body = self.json_body() or {}
        inputs = body.get("input") or {}
        spec = MODELS.get(model)
        if spec is None:
            return self.problem(404, f"Model {model} not found", "Not found")
        missing = [name for name in spec["required"] if name not in inputs]
        if missing:
            # Input validation failures are 422 problem details listing the fields (HTTP reference).
            return self.problem(422, "".join(f"- input: {name} is required\n" for name in missing),
                                "Input validation failed",
                                invalid_fields=[{"type": "required", "field": "input",
                                                 "description": f"{name} is required"} for name in missing])
        for name, value in inputs.items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, str) and item.startswith("http://"):
                    return self.problem(422, f"- input.{name}: Does not match format 'uri'\n",
                                        "Input validation failed")
        pid = secrets.token_hex(13)[:26]  # Replicate ids are 26 lowercase base32-ish characters
        plan = {**DEFAULT_PLAN, **self.state["plan"]}
        prediction = {
            "id": pid, "model": model, "version": version, "input": inputs, "logs": "", "output": None,
            "data_removed": False, "error": None, "status": "starting", "created_at": _now(),
            "started_at": None, "completed_at": None, "metrics": {},
            "urls": {"get": f"{self.base}/v1/predictions/{pid}", "cancel": f"{self.base}/v1/predictions/{pid}/cancel",
                     "web": f"https://replicate.com/p/{pid}"},
        }
        with self.lock:
            self.state["predictions"][pid] = {"prediction": prediction, "plan": plan, "polls": 0,
                                              "webhook": body.get("webhook"),
                                              "webhook_events_filter": body.get("webhook_events_filter")}
        # Create answers 201 with the prediction in "starting" (HTTP reference; SDK accepts any 2xx).
        self.send_json(201, prediction)

    def get_prediction(self, pid: str) -> None:
        with self.lock:
            record = self.state["predictions"].get(pid)
            if record is None:
                return self.problem(404, "Prediction not found", "Not found")
            self.advance(record)
            payload = json.loads(json.dumps(record["prediction"]))
        self.send_json(200, payload)

    def advance(self, record: dict[str, Any]) -> None:
        """One poll moves the prediction along its plan: starting → processing → succeeded|failed,
        the documented order (ref §2.2). `logs` only ever grows."""
        prediction, plan = record["prediction"], record["plan"]
        if prediction["status"] in ("succeeded", "failed", "canceled"):
            return
        record["polls"] += 1
        polls = record["polls"]
        if polls <= plan["starting_polls"]:
            return
        processing_step = polls - plan["starting_polls"]
        total = max(1, plan["processing_polls"])
        if prediction["status"] == "starting":
            prediction["status"] = "processing"
            prediction["started_at"] = _now()
            prediction["logs"] += f"Using seed: {prediction['input'].get('seed', 42)}\n"
        if processing_step <= plan["processing_polls"]:
            done = processing_step * 4 // total
            bar = "█" * (done * 10 // 4)
            # tqdm as cog models print it (see Prediction.Progress._pattern in replicate/prediction.py);
            # with a description, tqdm's default bar_format puts "{desc}: " before the percentage
            # (l_bar = "{desc}: {percentage:3.0f}%|", https://tqdm.github.io/docs/tqdm/), and it redraws a
            # bar in place with "\r" (tqdm's status_printer), so one poll may carry several redraws.
            desc = f"{plan['bar_desc']}: " if plan["bar_desc"] else ""
            redraws = max(1, plan["bar_redraws"])
            for redraw in range(redraws):
                end = "\n" if redraws == 1 else "\r"
                prediction["logs"] += (f"{desc}{done * 100 // 4:3d}%|{bar:<10}| {done}/4 "
                                       f"[00:0{done}<00:00,  2.{redraw:02d}it/s]{end}")
            return
        prediction["completed_at"] = _now()
        # metrics.predict_time appears on terminal predictions (ref §2.2).
        prediction["metrics"] = {"predict_time": plan["predict_time"], "total_time": plan["predict_time"] + 0.4}
        if plan["outcome"] == "failed":
            prediction["status"] = "failed"
            prediction["error"] = plan["error"] or "Prediction failed."
            prediction["logs"] += f"Traceback (most recent call last):\n{prediction['error']}\n"
            return
        prediction["status"] = "succeeded"
        prediction["logs"] += "Done.\n"
        prediction["output"] = self.make_output(prediction, plan)

    def make_output(self, prediction: dict[str, Any], plan: dict[str, Any]) -> Any:
        shape = MODELS[prediction["model"]]["shape"]
        pid = prediction["id"]

        def publish(ext: str, index: int) -> str:
            data = file_bytes(ext, index)
            if plan["data_uri"]:
                # Small outputs may come back inline as data: URIs (ref §2.3).
                return f"data:{CONTENT_TYPES[ext]};base64,{base64.b64encode(data).decode()}"
            path = f"/delivery/{pid}/out-{index}.{ext}"
            self.state["files"][path] = (data, CONTENT_TYPES[ext])
            return self.base + path

        if shape == "single":
            return publish(MODELS[prediction["model"]]["ext"], 0)
        if shape == "list":
            count = plan["num_outputs"] or int(prediction["input"].get("num_outputs", 1))
            return [publish(MODELS[prediction["model"]]["ext"], i) for i in range(count)]
        return {key: (publish(ext, i) if ext else None) for i, (key, ext) in enumerate(shape.items())}

    def cancel(self, pid: str) -> None:
        with self.lock:
            record = self.state["predictions"].get(pid)
            if record is None:
                return self.problem(404, "Prediction not found", "Not found")
            prediction = record["prediction"]
            # Cancelling a running prediction makes it "canceled"; a finished one is returned as it is.
            if prediction["status"] in ("starting", "processing"):
                if prediction["status"] == "processing":
                    # One that had started is billed for the time it ran, reported as
                    # metrics.predict_time (https://replicate.com/docs/topics/predictions/lifecycle,
                    # "Canceled (started running): You pay for the time the prediction ran").
                    prediction["metrics"] = {"predict_time": record["plan"]["predict_time"]}
                prediction["status"] = "canceled"
                prediction["completed_at"] = _now()
                record["canceled_by_client"] = True
            payload = json.loads(json.dumps(prediction))
        self.send_json(200, payload)

    def upload(self) -> None:
        # POST /v1/files, multipart with a `content` part (replicate/file.py _create_file_params).
        part = self.multipart_part("content")
        if part is None:
            return self.problem(422, "- content: required\n", "Input validation failed")
        headers, data = part
        disposition = headers.get("content-disposition", "")
        filename = re.search(r'filename="([^"]*)"', disposition)
        content_type = headers.get("content-type", "application/octet-stream")
        fid = secrets.token_hex(8)
        self.state["files"][fid] = (data, content_type)
        now = _now()
        self.send_json(201, {
            "id": fid, "name": filename.group(1) if filename else "file", "content_type": content_type,
            "size": len(data), "etag": hashlib.md5(data).hexdigest(),  # noqa: S324 — an etag, not security
            "checksums": {"sha256": hashlib.sha256(data).hexdigest()}, "metadata": {}, "created_at": now,
            "expires_at": None, "urls": {"get": f"{self.base}/v1/files/{fid}"},
        })

    def multipart_part(self, name: str) -> tuple[dict[str, str], bytes] | None:
        match = re.search(r'boundary="?([^";]+)"?', self.headers.get("Content-Type", ""))
        if not match:
            return None
        for chunk in self.body.split(b"--" + match.group(1).encode())[1:-1]:
            head, _, data = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n"):
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            if f'name="{name}"' in headers.get("content-disposition", ""):
                return headers, data
        return None

    def serve_file(self, path: str) -> None:
        entry = self.state["files"].get(path)
        if entry is None:
            return self.send_bytes(404, b"not found", "text/plain")
        self.send_bytes(200, entry[0], entry[1])


def webhook_delivery(state: dict[str, Any], pid: str, *, timestamp: int | None = None,
                     msg_id: str | None = None) -> tuple[dict[str, str], bytes]:
    """The request Replicate would POST to the prediction's webhook now: the prediction JSON as the
    body (ref §2.4), signed with the account's secret. `webhook-id` is stable across retries."""
    body = json.dumps(state["predictions"][pid]["prediction"])
    headers = sign_webhook(state["webhook_secret"], body, msg_id=msg_id or f"msg_{pid}", timestamp=timestamp)
    return {**headers, "Content-Type": "application/json"}, body.encode()


__all__ = ["MODELS", "ReplicateFake", "file_bytes", "glb_bytes", "image_bytes", "mp4_bytes", "new_webhook_secret",
           "sign_webhook", "webhook_delivery"]
