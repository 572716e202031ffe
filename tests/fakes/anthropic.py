"""A loopback fake of the Anthropic Messages API (docs/providers/anthropic.md, "The wire protocol").

Scripting, through `server.state`:
- `state["keys"]`: accepted API keys (default {"test-key"}).
- `state["fail_next"]`: a list of `{"status", "body", "headers"}` answered (and dropped) in order.
- `state["gate"]`: a `threading.Event`; while set in state, /v1/messages waits for it after recording.
- `state["reply"]`: the answer's text (default: built from the prompt).
- `state["no_text"]`: a list; each message pops the first entry and answers without a text block, with
  that stop_reason: "max_tokens" (the budget went to thinking) or "end_turn" (the documented empty
  end_turn answer, https://platform.claude.com/docs/en/build-with-claude/handling-stop-reasons).
After each answer, `state["outputs"]` holds the texts handed out, in order.
"""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.server import JSONHandler


def anthropic_error(type_: str, message: str) -> dict[str, Any]:
    # {"type":"error","error":{"type","message"}}: https://docs.anthropic.com/en/api/errors
    return {"type": "error", "error": {"type": type_, "message": message}}


def overloaded() -> dict[str, Any]:
    """HTTP 529 overloaded_error (SDK `OverloadedError`, `_exceptions.py`)."""
    return {"status": 529, "body": anthropic_error("overloaded_error", "Overloaded"), "headers": {}}


def rate_limited(retry_after: int = 3) -> dict[str, Any]:
    """HTTP 429 with `retry-after` and the anthropic-ratelimit-* headers (docs: /en/api/rate-limits)."""
    return {"status": 429, "headers": {"retry-after": str(retry_after),
                                       "anthropic-ratelimit-requests-remaining": "0",
                                       "anthropic-ratelimit-requests-reset": "2026-11-21T12:00:03Z"},
            "body": anthropic_error("rate_limit_error", "Number of request tokens has exceeded your "
                                                        "per-minute rate limit.")}


class AnthropicFake(JSONHandler):
    def _route(self) -> str:
        return self.path.split("?", 1)[0]

    def _authorised(self) -> bool:
        # SDK 2.12 sends `Authorization: Bearer <key>`; 1.x and 0.x sent `X-Api-Key`. Accept both
        # (reference §5.1; anthropic/_client.py `_api_key_auth`).
        key = self.headers.get("x-api-key") or self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if key in self.server.state.get("keys", {"test-key"}):
            return True
        self.send_json(401, anthropic_error("authentication_error", "invalid x-api-key"),
                       {"request-id": "req_fake_401"})
        return False

    def _scripted_failure(self) -> bool:
        queue = self.server.state.get("fail_next") or []
        if not queue:
            return False
        failure = queue.pop(0)
        self.send_json(failure["status"], failure["body"], {"request-id": "req_fake_err", **failure.get("headers", {})})
        return True

    def do_GET(self) -> None:
        self.record()
        if not self._authorised() or self._scripted_failure():
            return
        if self._route() == "/v1/models":
            # GET /v1/models: a page {"data":[{"type":"model","id","display_name","created_at"}],
            # "has_more","first_id","last_id"} (types/model_info.py)
            self.send_json(200, {"data": [{"type": "model", "id": "claude-sonnet-5-5",
                                           "display_name": "Claude Sonnet 5.5", "created_at": "2026-09-01T00:00:00Z"}],
                                 "has_more": False, "first_id": "claude-sonnet-5-5", "last_id": "claude-sonnet-5-5"})
        else:
            self.send_json(404, anthropic_error("not_found_error", f"Not found: {self._route()}"))

    def do_POST(self) -> None:
        self.record()
        if not self._authorised() or self._scripted_failure():
            return
        if self._route() != "/v1/messages":
            self.send_json(404, anthropic_error("not_found_error", f"Not found: {self._route()}"))
            return
        gate = self.server.state.get("gate")
        if gate is not None:
            gate.wait(10)
        params = self.json_body()
        if not params.get("max_tokens"):
            self.send_json(400, anthropic_error("invalid_request_error", "max_tokens: Field required"))
            return
        if "temperature" in params and params.get("model", "").startswith("claude-sonnet-5"):
            # Sonnet 5+ refuses non-default sampling parameters (platform.claude.com sonnet-5 overview).
            self.send_json(400, anthropic_error("invalid_request_error",
                                                "temperature is not supported for this model."))
            return
        messages = params.get("messages") or []
        user = messages[-1]["content"] if messages else ""
        user = user if isinstance(user, str) else " ".join(b.get("text", "") for b in user)
        system = params.get("system") or ""
        if "forbidden" in user:
            # stop_reason "refusal" (types/stop_reason.py): no text, the request is billed.
            self._answer(params, [], stop_reason="refusal", input_tokens=12, output_tokens=0)
            return
        pending = self.server.state.get("no_text") or []
        if pending:
            # Only a thinking block; an empty end_turn answer is "exactly 2-3 tokens with no content"
            # (handling-stop-reasons, "Empty responses with end_turn").
            stop_reason = pending.pop(0)
            self._answer(params, [{"type": "thinking", "thinking": "", "signature": "sig"}], stop_reason=stop_reason,
                         input_tokens=12, output_tokens=int(params["max_tokens"]) if stop_reason == "max_tokens" else 3)
            return
        reply = self.server.state.get("reply") or f"## Breakdown\n\n{user}\n\n(system prompt: {len(system)} chars)"
        self.server.state.setdefault("outputs", []).append(reply)
        content = [{"type": "thinking", "thinking": "", "signature": "sig"}, {"type": "text", "text": reply}]
        self._answer(params, content, stop_reason="end_turn",
                     input_tokens=len((str(system) + " " + user).split()), output_tokens=len(reply.split()) + 5)

    def _answer(self, params: dict[str, Any], content: list[dict[str, Any]], *, stop_reason: str,
                input_tokens: int, output_tokens: int) -> None:
        # The Message object (reference §5.1; types/message.py, types/usage.py).
        self.send_json(200, {
            "id": f"msg_{int(time.time() * 1000)}", "type": "message", "role": "assistant",
            "model": params.get("model"), "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"}},
            {"request-id": "req_fake_ok"})


__all__ = ["AnthropicFake", "anthropic_error", "overloaded", "rate_limited"]
