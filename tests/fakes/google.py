"""A fake Google Gen AI backend: the Gemini Developer API and the Vertex AI (express mode) routes that
google-genai 3.4.0 calls, as captured from the SDK (tests/providers/google/ records them).

Routes (paths as the SDK builds them; see docs/providers/google.md, "The wire protocol" §3.x):
  POST /{v1|v1beta}/models/{model}:generateContent                      Gemini text and image output
  GET  /{v1|v1beta}/models[?pageSize=N], /{v1|v1beta}/models/{model}   models.list / models.get
  POST /v1beta1/publishers/google/models/{model}:predict                 Imagen (Vertex only in 3.4.0)
  POST /v1beta1/publishers/google/models/{model}:predictLongRunning      Veo submit (Vertex only in 3.4.0)
  POST /v1beta1/{model resource}:fetchPredictOperation                   Veo poll (operations.get, Vertex)

Scripting through `server.state` (all optional):
  api_keys          keys accepted in `x-goog-api-key` (default {"test-key"})
  fail              list of {"route", "code", "status", "message", "retry_delay", "headers"}; the first entry
                    whose route ("generateContent", "predict", "predictLongRunning",
                    "fetchPredictOperation", "models" or "*") matches is answered as an error and removed
  text              the Gemini answer text; finish_reason (default "STOP"); thoughts_tokens (default 0)
  block_reason      answer with promptFeedback.blockReason and no candidates
  image             bytes returned as inlineData / bytesBase64Encoded (default: a PNG made with Pillow)
  image_text        a text part next to the Gemini image
  imagen_filtered   a raiFilteredReason: every Imagen prediction is filtered
  video             mp4 bytes for Veo (default: a tiny ISO-BMFF file)
  veo_pending_polls polls answered with done=false before the operation finishes (default 1)
  veo_error         {"code", "message"}: the operation finishes with this google.rpc.Status
  veo_filtered      a list of raiMediaFilteredReasons: the operation finishes with no video
  delay             seconds to wait before sending the answer (to drive client timeouts)
"""

from __future__ import annotations

import base64
import io
import re
import time
import uuid
from typing import Any

from PIL import Image

from tests.fakes.server import JSONHandler

FAKE_PROJECT = "123456789012"
FAKE_LOCATION = "us-central1"

# An mp4 that content sniffing accepts: an ISO-BMFF 'ftyp' box (major brand isom) then an empty 'mdat'.
MP4_BYTES = (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
             b"\x00\x00\x00\x10mdat" + b"\x00" * 8)

# Canonical HTTP status → google.rpc status names (https://ai.google.dev/gemini-api/docs/troubleshooting).
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

DEVELOPER_CONTENT = re.compile(r"^/(v1|v1beta)/models/([^/:?]+):generateContent$")
DEVELOPER_MODELS = re.compile(r"^/(v1|v1beta)/models(?:/([^/:?]+))?$")
VERTEX_PREDICT = re.compile(r"^/v1beta1/publishers/google/models/([^/:?]+):(predict|predictLongRunning)$")
VERTEX_FETCH = re.compile(r"^/v1beta1/(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/([^/:?]+)"
                          r":fetchPredictOperation$")


def png_bytes(size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class GoogleFakeHandler(JSONHandler):
    # --- plumbing ---------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self.record()
        path = self.path.split("?", 1)[0]
        state = self.server.state
        # The delay is applied when the answer is sent (send_bytes), after the state was read, so a slow
        # answer still belongs to the test that asked for it.
        self.delay = float(state.get("delay") or 0)
        if (match := DEVELOPER_CONTENT.match(path)) and self.command == "POST":
            route, handler, args = "generateContent", self._generate_content, (match.group(2),)
        elif (match := DEVELOPER_MODELS.match(path)) and self.command == "GET":
            route, handler, args = "models", self._models, (match.group(2),)
        elif (match := VERTEX_PREDICT.match(path)) and self.command == "POST":
            route = match.group(2)
            handler = self._predict if route == "predict" else self._predict_long_running
            args = (match.group(1),)
        elif (match := VERTEX_FETCH.match(path)) and self.command == "POST":
            route, handler, args = "fetchPredictOperation", self._fetch_operation, (match.group(1),)
        else:
            # Google answers unknown methods/paths with a NOT_FOUND status body.
            self.send_error_body(404, f"Method not found: {self.command} {path}")
            return
        # A bad key is a 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID, not a 401
        # (what generativelanguage.googleapis.com answers; the SDK sends the key as x-goog-api-key).
        if self.headers.get("x-goog-api-key") not in state.get("api_keys", {"test-key"}):
            self.send_error_body(400, "API key not valid. Please pass a valid API key.", details=[
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
            return
        scripted = self._take_failure(route)
        if scripted is not None:
            details = []
            if scripted.get("retry_delay"):
                # 429s from the Gemini API carry google.rpc.RetryInfo with the delay to wait.
                details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": scripted["retry_delay"]})
            self.send_error_body(int(scripted["code"]), scripted.get("message", "Scripted failure."),
                                 status=scripted.get("status"), details=details, headers=scripted.get("headers"))
            return
        handler(*args)

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        if getattr(self, "delay", 0):
            time.sleep(self.delay)
        super().send_bytes(status, data, content_type, headers)

    def _take_failure(self, route: str) -> dict[str, Any] | None:
        failures = self.server.state.get("fail") or []
        for index, failure in enumerate(failures):
            if failure.get("route", "*") in (route, "*"):
                return failures.pop(index)
        return None

    def send_error_body(self, code: int, message: str, *, status: str | None = None,
                        details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> None:
        # Google's error envelope: {"error": {"code", "message", "status", "details"}} (google.rpc.Status
        # over HTTP; google-genai's errors.APIError reads code/message/status from it).
        body: dict[str, Any] = {"code": code, "message": message, "status": status or STATUS_NAMES.get(code, "UNKNOWN")}
        if details:
            body["details"] = details
        self.send_json(code, {"error": body}, headers)

    # --- Gemini Developer API -----------------------------------------------------------------------------

    def _generate_content(self, model: str) -> None:
        state = self.server.state
        request = self.json_body() or {}
        parts = [p for c in request.get("contents", []) for p in c.get("parts", [])]
        prompt_text = " ".join(p.get("text", "") for p in parts)
        system = " ".join(p.get("text", "") for p in (request.get("systemInstruction") or {}).get("parts", []))
        inline_images = sum(1 for p in parts if "inlineData" in p)
        # Each input image counts as 258 tokens for Gemini 2.x (ai.google.dev/gemini-api/docs/tokens).
        prompt_tokens = _tokens(prompt_text) + (_tokens(system) if system else 0) + 258 * inline_images
        usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
        if state.get("block_reason"):
            # A blocked prompt: promptFeedback.blockReason and no candidates (GenerateContentResponse docs).
            self.send_json(200, {"promptFeedback": {"blockReason": state["block_reason"]},
                                 "usageMetadata": {**usage, "totalTokenCount": prompt_tokens},
                                 "modelVersion": model})
            return
        modalities = (request.get("generationConfig") or {}).get("responseModalities") or ["TEXT"]
        finish = state.get("finish_reason", "STOP")
        out_parts: list[dict[str, Any]] = []
        details: list[dict[str, Any]] = []
        if "IMAGE" in modalities and finish == "STOP":
            if state.get("image_text"):
                out_parts.append({"text": state["image_text"]})
            image = state.get("image") or png_bytes()
            out_parts.append({"inlineData": {"mimeType": "image/png", "data": _b64(image)}})
            # 1290 output tokens per image up to 1024x1024 (ai.google.dev/gemini-api/docs/pricing).
            details.append({"modality": "IMAGE", "tokenCount": 1290})
            candidates_tokens = 1290 + (_tokens(state["image_text"]) if state.get("image_text") else 0)
        elif finish in ("STOP", "MAX_TOKENS"):
            text = state.get("text", "Hello from the fake Gemini.")
            out_parts.append({"text": text})
            candidates_tokens = _tokens(text)
            details.append({"modality": "TEXT", "tokenCount": candidates_tokens})
        else:  # SAFETY and friends: the candidate comes back without content
            candidates_tokens = 0
        thoughts = int(state.get("thoughts_tokens", 0))
        usage.update(candidatesTokenCount=candidates_tokens,
                     totalTokenCount=prompt_tokens + candidates_tokens + thoughts)
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if details:
            usage["candidatesTokensDetails"] = details
        candidate: dict[str, Any] = {"finishReason": finish, "index": 0}
        if out_parts:
            candidate["content"] = {"role": "model", "parts": out_parts}
        self.send_json(200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
                             "responseId": uuid.uuid4().hex[:22]})

    def _models(self, model: str | None) -> None:
        entry = {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
                 "supportedGenerationMethods": ["generateContent", "countTokens"]}
        if model:
            self.send_json(200, {**entry, "name": f"models/{model}"})
        else:
            self.send_json(200, {"models": [entry], "nextPageToken": ""})

    # --- Vertex AI (express mode) ------------------------------------------------------------------------------

    def _predict(self, model: str) -> None:
        # Imagen :predict → {"predictions": [{"bytesBase64Encoded", "mimeType"}]}; with includeRaiReason a
        # filtered image is a prediction holding only raiFilteredReason (_GeneratedImage_from_vertex).
        state = self.server.state
        request = self.json_body() or {}
        count = int((request.get("parameters") or {}).get("sampleCount") or 1)
        if state.get("imagen_filtered"):
            self.send_json(200, {"predictions": [{"raiFilteredReason": state["imagen_filtered"]}] * count})
            return
        image = state.get("image") or png_bytes()
        self.send_json(200, {"predictions": [{"bytesBase64Encoded": _b64(image), "mimeType": "image/png"}
                                             for _ in range(count)]})

    def _predict_long_running(self, model: str) -> None:
        # Veo :predictLongRunning → a google.longrunning.Operation with only its name.
        name = (f"projects/{FAKE_PROJECT}/locations/{FAKE_LOCATION}/publishers/google/models/{model}"
                f"/operations/{uuid.uuid4()}")
        operations = self.server.state.setdefault("operations", {})
        operations[name] = {"model": model, "polls": 0, "request": self.json_body()}
        self.send_json(200, {"name": name})

    def _fetch_operation(self, model: str) -> None:
        state = self.server.state
        name = (self.json_body() or {}).get("operationName", "")
        operation = state.get("operations", {}).get(name)
        if operation is None:
            self.send_error_body(404, f"Operation {name} not found.")
            return
        operation["polls"] += 1
        if operation["polls"] <= int(state.get("veo_pending_polls", 1)):
            self.send_json(200, {"name": name})  # done is omitted while the operation runs
            return
        if state.get("veo_error"):
            self.send_json(200, {"name": name, "done": True, "error": state["veo_error"]})
            return
        response: dict[str, Any] = {"@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"}
        if state.get("veo_filtered"):
            response.update(raiMediaFilteredCount=1, raiMediaFilteredReasons=list(state["veo_filtered"]))
        else:
            # Without storageUri Vertex returns the video inline (_Video_from_vertex: bytesBase64Encoded).
            response.update(raiMediaFilteredCount=0,
                            videos=[{"bytesBase64Encoded": _b64(state.get("video") or MP4_BYTES),
                                     "mimeType": "video/mp4"}])
        self.send_json(200, {"name": name, "done": True, "response": response})


__all__ = ["FAKE_PROJECT", "GoogleFakeHandler", "MP4_BYTES", "png_bytes"]
