"""A loopback fake of the OpenAI API, also serving OpenRouter's OpenAI-compatible routes.

Wire format from docs/providers/openai.md and docs/providers/openrouter.md ("The wire protocol"), checked
against the openai 3.54 SDK source. Routes are served under `/v1/...` (OpenAI, base_url
`<fake>/v1`) and `/api/v1/...` (OpenRouter, base_url `<fake>/api/v1`); the prefix picks the flavour.

Scripting, through `server.state` (see `FakeServer`):
- `state["keys"]`: accepted API keys (default {"test-key"}); others get 401 `invalid_api_key`.
- `state["fail_next"]`: a list of `{"status", "body", "headers", "path"?}`; the next request (to a
  path containing "path", when given) is answered with the first one, which is then dropped.
- `state["error_in_body"]`: OpenRouter only; the next completion answers HTTP 200 with this `error`
  object in the body instead (errors after generation started, per openrouter.ai/docs/api/errors).
- `state["gate"]`: a `threading.Event`; while set in state, generation routes wait for it (a slow
  call to cancel), recording the request first.
- `state["reply"]`: the chat answer's text (default: built from the prompt).
- `state["no_content"]`: a list; each chat completion pops the first entry and answers HTTP 200 without
  an answer: "empty" is OpenRouter's "no content generated" (a model warming up or scaling; the prompt
  may still be billed: https://openrouter.ai/docs/errors), "length" a reasoning model that spent the
  whole `max_completion_tokens` thinking (https://platform.openai.com/docs/guides/reasoning).
After each answer, `state["outputs"]` holds the bytes or text handed out, in order.
"""

from __future__ import annotations

import base64
import io
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from PIL import Image

from tests.fakes.server import JSONHandler

# Output tokens of one 1024x1024 image by quality for GPT Image 2.5 Flare, as measured in
# https://raw.githubusercontent.com/sanand0/blog/main/posts/2026/quality-levels-of-gpt-image-2.5-flare.md
IMAGE_OUTPUT_TOKENS = {"low": 196, "medium": 439, "high": 1756, "auto": 439}
# OpenRouter reports cost in credits (USD) in `usage.cost` of every response (usage accounting docs).
OPENROUTER_COST = 0.000123


def png_bytes(colour: tuple[int, int, int] = (40, 90, 160), size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def mp3_bytes() -> bytes:
    """An ID3v2 tag then MPEG-1 Layer III frames (sync 0xFFFB): what OpenAI's mp3 speech starts with."""
    frame = b"\xff\xfb\x90\x64" + b"\x00" * 413
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + frame * 4


def openai_error(message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    # {"error": {"message", "type", "param", "code"}}: https://platform.openai.com/docs/guides/error-codes
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def openrouter_error(code: int, message: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    # {"error": {"code": <http status>, "message", "metadata"}}: https://openrouter.ai/docs/api/errors
    return {"error": {"code": code, "message": message, **({"metadata": metadata} if metadata else {})}}


class OpenAIFake(JSONHandler):
    @property
    def openrouter(self) -> bool:
        return self.path.startswith("/api/v1/")

    @property
    def route(self) -> str:
        path = self.path.split("?", 1)[0]
        return path[len("/api"):] if self.openrouter else path

    # --- plumbing -------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.record()
        if not self._authorised() or self._scripted_failure():
            return
        if self.route == "/v1/models":
            # GET /v1/models → {"object":"list","data":[{"id","object":"model","created","owned_by"}]}
            self.send_json(200, {"object": "list", "data": [
                {"id": "gpt-image-2.5-flare", "object": "model", "created": 1757289600, "owned_by": "system"},
                {"id": "gpt-6-luna", "object": "model", "created": 1760000000, "owned_by": "system"}]})
        elif self.route == "/v1/key" and self.openrouter:
            # GET /api/v1/key: the calling key's label, usage and limit (openrouter.ai/docs/api/reference/limits)
            self.send_json(200, {"data": {"label": "sk-or-v1-tes...key", "usage": 1.25, "limit": None,
                                          "is_free_tier": False}})
        else:
            self.send_json(404, openai_error(f"Unknown route {self.route}", code="unknown_url"))

    def do_POST(self) -> None:
        self.record()
        if not self._authorised() or self._scripted_failure():
            return
        gate = self.server.state.get("gate")
        if gate is not None:
            gate.wait(10)
        handlers = {"/v1/images/generations": self._images_generate, "/v1/images/edits": self._images_edit,
                    "/v1/chat/completions": self._chat, "/v1/audio/speech": self._speech}
        handler = handlers.get(self.route)
        if handler is None:
            self.send_json(404, openai_error(f"Unknown route {self.route}", code="unknown_url"))
            return
        handler()

    def _authorised(self) -> bool:
        # Both APIs take `Authorization: Bearer <key>` (reference §0; SDK `auth_headers`).
        header = self.headers.get("Authorization", "")
        key = header.removeprefix("Bearer ").strip()
        if key in self.server.state.get("keys", {"test-key"}):
            return True
        if self.openrouter:
            self.send_json(401, openrouter_error(401, "No auth credentials found"))
        else:
            self.send_json(401, openai_error(
                f"Incorrect API key provided: {key[:3]}***. You can find your API key at "
                "https://platform.openai.com/account/api-keys.", code="invalid_api_key"))
        return False

    def _scripted_failure(self) -> bool:
        queue = self.server.state.get("fail_next") or []
        for index, failure in enumerate(queue):
            if failure.get("path") and failure["path"] not in self.route:
                continue
            del queue[index]
            self.send_json(failure["status"], failure["body"], failure.get("headers"))
            return True
        return False

    def _remember(self, output: Any) -> None:
        self.server.state.setdefault("outputs", []).append(output)

    # --- images (reference §4.2) ---------------------------------------------------------------------

    def _images_response(self, params: dict[str, Any], *, image_input_tokens: int) -> None:
        n = int(params.get("n") or 1)
        quality = str(params.get("quality") or "auto")
        fmt = str(params.get("output_format") or "png")
        images = []
        for index in range(n):
            data = png_bytes((40 + 30 * index, 90, 160)) if fmt == "png" else self._encode(fmt, index)
            self._remember(data)
            images.append({"b64_json": base64.b64encode(data).decode()})
        output_tokens = IMAGE_OUTPUT_TOKENS.get(quality, 439) * n
        text_tokens = max(1, len(str(params.get("prompt", "")).split()))
        # GPT image models always answer b64_json plus usage (types/images_response.py); never a URL.
        self.send_json(200, {
            "created": int(time.time()), "data": images, "output_format": fmt, "quality": quality,
            "size": params.get("size") or "1024x1024", "background": "opaque",
            "usage": {"input_tokens": text_tokens + image_input_tokens,
                      "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_input_tokens},
                      "output_tokens": output_tokens, "total_tokens": text_tokens + image_input_tokens + output_tokens,
                      "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0}}},
            {"x-request-id": f"req_{int(time.time() * 1000)}"})

    @staticmethod
    def _encode(fmt: str, index: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 40 + 30 * index, 90)).save(buffer, format=fmt.upper())
        return buffer.getvalue()

    def _images_generate(self) -> None:
        # POST /v1/images/generations is JSON: {"model","prompt","quality","size","n",...} [captured]
        params = self.json_body()
        if self._refuse_prompt(params.get("prompt", "")):
            return
        self._images_response(params, image_input_tokens=0)

    def _images_edit(self) -> None:
        # POST /v1/images/edits is multipart/form-data: text fields plus file parts `image` (or `image[]`)
        # and `mask` [captured]; images.edit docstring: png/webp/jpg images, mask a PNG with alpha.
        fields, files = self._multipart()
        self.server.state["last_edit"] = {"fields": fields, "files": files}
        images = [content for name, content in files.items() if name.startswith("image")]
        if not images:
            self.send_json(400, openai_error("Missing required parameter: 'image'.", param="image",
                                             code="missing_required_parameter"))
            return
        if "mask" in files:
            with Image.open(io.BytesIO(files["mask"])) as mask:
                if mask.mode != "RGBA":
                    self.send_json(400, openai_error("Invalid mask image format - mask image missing alpha "
                                                     "channel", param="mask", code="invalid_image_format"))
                    return
        if self._refuse_prompt(fields.get("prompt", "")):
            return
        self._images_response(fields, image_input_tokens=323 * len(images))

    def _refuse_prompt(self, prompt: str) -> bool:
        # Safety-system refusals are 400 with code moderation_blocked (images guide, "Content moderation").
        if "forbidden" not in prompt:
            return False
        self.send_json(400, openai_error(
            "Your request was rejected as a result of our safety system. Your prompt may contain text "
            "that is not allowed by our safety system.", type_="image_generation_user_error",
            code="moderation_blocked"))
        return True

    def _multipart(self) -> tuple[dict[str, str], dict[str, bytes]]:
        content_type = self.headers.get("Content-Type", "")
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + self.body)
        fields: dict[str, str] = {}
        files: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                files[name] = payload
            else:
                fields[name] = payload.decode()
        return fields, files

    # --- chat completions (reference §4.3, §5.2) ------------------------------------------------------

    def _chat(self) -> None:
        params = self.json_body()
        messages = params.get("messages") or []
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        if self.openrouter and self.server.state.get("error_in_body"):
            # Errors after the upstream model started arrive as HTTP 200 with an `error` object.
            error = self.server.state.pop("error_in_body")
            self.send_json(200, {"id": "gen-err", "object": "chat.completion", "created": int(time.time()),
                                 "model": params.get("model"), "choices": [], "error": error})
            return
        pending = self.server.state.get("no_content") or []
        if pending:
            self._no_answer(params, pending.pop(0), prompt_tokens=len((system + " " + user).split()))
            return
        if "forbidden" in user:
            if self.openrouter:
                # 403: the input was flagged by moderation (openrouter.ai/docs/api/errors).
                self.send_json(403, openrouter_error(403, "Input was flagged by moderation.",
                                                     {"reasons": ["violence"], "flagged_input": user[:40]}))
            else:
                # A refusal is a 200 with `message.refusal` set (types/chat/chat_completion_message.py).
                self._chat_answer(params, None, prompt_tokens=12, refusal="I can't help with that request.")
            return
        reply = self.server.state.get("reply") or f"## Answer\n\n{user}\n\n(system prompt: {len(system)} chars)"
        self._remember(reply)
        self._chat_answer(params, reply, prompt_tokens=len((system + " " + user).split()))

    def _no_answer(self, params: dict[str, Any], kind: str, *, prompt_tokens: int) -> None:
        if kind == "length":
            # A reasoning model spent all of max_completion_tokens on hidden reasoning: empty content,
            # finish_reason "length", the reasoning billed as completion tokens
            # (https://platform.openai.com/docs/guides/reasoning#allocating-space-for-reasoning).
            budget = int(params.get("max_completion_tokens") or params.get("max_tokens") or 2048)
            self._chat_answer(params, "", prompt_tokens=prompt_tokens, finish_reason="length",
                              completion_tokens=budget, reasoning_tokens=budget)
        else:
            # "When No Content is Generated" (https://openrouter.ai/docs/errors): a 200 with an empty
            # answer while the model warms up or scales; the prompt may still be billed (usage.cost).
            self._chat_answer(params, "", prompt_tokens=prompt_tokens)

    def _chat_answer(self, params: dict[str, Any], reply: str | None, *, prompt_tokens: int,
                     refusal: str | None = None, finish_reason: str = "stop", completion_tokens: int | None = None,
                     reasoning_tokens: int = 0) -> None:
        if completion_tokens is None:
            completion_tokens = len((reply or "").split())
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens,
                                 "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}
        if self.openrouter:
            # usage.cost (credits = USD) in every response (openrouter.ai/docs/use-cases/usage-accounting).
            usage.update(cost=OPENROUTER_COST, is_byok=False,
                         prompt_tokens_details={"cached_tokens": 0, "audio_tokens": 0},
                         cost_details={"upstream_inference_cost": None})
        self.send_json(200, {
            "id": "gen-1" if self.openrouter else "chatcmpl-1", "object": "chat.completion",
            "created": int(time.time()), "model": params.get("model"),
            **({"provider": "DeepInfra"} if self.openrouter else {}),
            "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                         "message": {"role": "assistant", "content": reply, "refusal": refusal}}],
            "usage": usage})

    # --- text to speech (reference §4.4) ---------------------------------------------------------------

    def _speech(self) -> None:
        params = self.json_body()
        if not str(params.get("input", "")).strip():
            self.send_json(400, openai_error("Input must not be empty", param="input"))
            return
        # The body is raw audio, not JSON (Content-Type audio/mpeg for mp3) [captured].
        audio = mp3_bytes()
        self._remember(audio)
        self.send_bytes(200, audio, "audio/mpeg")


def rate_limited(retry_after_ms: int = 1500, *, path: str | None = None) -> dict[str, Any]:
    """A 429 as OpenAI sends it, with `retry-after-ms` (SDK `_parse_retry_after_header`) and the
    `x-ratelimit-*` headers from the rate-limits guide."""
    failure = {"status": 429, "headers": {"retry-after-ms": str(retry_after_ms),
                                          "x-ratelimit-remaining-requests": "0",
                                          "x-ratelimit-reset-requests": "1s"},
               "body": openai_error("Rate limit reached for requests per min (RPM): Limit 5, Used 5. "
                                    "Please try again in 1.5s.", type_="requests", code="rate_limit_exceeded")}
    if path:
        failure["path"] = path
    return failure


__all__ = ["OPENROUTER_COST", "OpenAIFake", "mp3_bytes", "openai_error", "openrouter_error", "png_bytes",
           "rate_limited"]
