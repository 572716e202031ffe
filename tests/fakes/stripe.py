"""A loopback Stripe: the Checkout Session routes the `stripe` SDK (16.1.0) calls, and builders for the
events Stripe sends to webhooks, signed with the documented scheme.

Behaviour follows docs/STRIPE.md, "The wire protocol" §6 ("ref §6.x"):
- form-encoded POST bodies with bracket notation (`line_items[0][price_data][unit_amount]=500`), ref §6.1;
- `Authorization: Bearer sk_…`; an `Idempotency-Key` on every POST, echoed back; a key reused with the
  same parameters replays the first response (`Idempotent-Replayed: true`), with different ones is a
  400 `idempotency_error`, ref §6.4;
- errors as `{"error": {"type", "code", "message", "param"}}`, ref §6.1;
- a new session is `status=open`, `payment_status=unpaid`, `payment_intent=null`, ref §6.2.

Scripting, through `server.state` (see `StripeFake.install`):

    state["keys"]       accepted secret keys (default {"sk_test_fake"})
    state["errors"]     [{"on": "create"|"retrieve", "status": 400, "type": "invalid_request_error",
                          "code": "...", "message": "...", "headers": {...}}, ...] each answers one
                        matching request, in order, then is used up
    state["sessions"]   id → the session as Stripe holds it (tests mark one paid by editing it)
    state["idempotency"] key → (request body, response) for replays
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

from tests.fakes.server import JSONHandler

API_VERSION = "2026-10-28.endive"  # the SDK's pin (ref §6.1)
SESSION_PATH = re.compile(r"^/v1/checkout/sessions/(?P<id>[A-Za-z0-9_]+)$")


def parse_form(body: bytes) -> dict[str, Any]:
    """Stripe's bracket notation back into nested data: a[b][0][c]=1 → {"a": {"b": [{"c": "1"}]}}."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {key: _listify(value) for key, value in node.items()}
    if node and all(key.isdigit() for key in node):
        return [node[key] for key in sorted(node, key=int)]
    return node


class StripeFake(JSONHandler):
    lock = threading.Lock()

    @staticmethod
    def install(state: dict[str, Any]) -> None:
        state.setdefault("keys", {"sk_test_fake"})
        state.setdefault("errors", [])
        state.setdefault("sessions", {})
        state.setdefault("idempotency", {})

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer ") and header[7:] in self.server.state["keys"]:
            return True
        self._error(401, "invalid_request_error", None, "Invalid API Key provided.")
        return False

    def _error(self, status: int, type_: str, code: str | None, message: str, param: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"error": {"type": type_, "code": code, "message": message, "param": param}},
                       headers={"Request-Id": f"req_{secrets.token_hex(6)}", **(headers or {})})

    def _scripted(self, on: str) -> bool:
        with self.lock:
            errors = self.server.state["errors"]
            scripted = next((e for e in errors if e["on"] == on), None)
            if scripted is None:
                return False
            errors.remove(scripted)
        self._error(scripted.get("status", 400), scripted.get("type", "invalid_request_error"),
                    scripted.get("code"), scripted.get("message", "Scripted failure."), scripted.get("param"),
                    scripted.get("headers"))
        return True

    def do_POST(self) -> None:
        self.record()
        if not self._authorised():
            return
        if urlsplit(self.path).path != "/v1/checkout/sessions":
            self._error(404, "invalid_request_error", "resource_missing", f"Unrecognized request URL (POST: {self.path}).")
            return
        key = self.headers.get("Idempotency-Key", "")
        with self.lock:
            seen = self.server.state["idempotency"].get(key) if key else None
        if seen is not None:
            body, response = seen
            if body != self.body:  # ref §6.4: same key, different parameters
                self._error(400, "idempotency_error", None, "Keys for idempotent requests can only be used with "
                            "the same parameters they were first used with.")
                return
            self.send_json(200, response, headers={"Idempotency-Key": key, "Idempotent-Replayed": "true"})
            return
        if self._scripted("create"):
            return
        params = parse_form(self.body)
        missing = [name for name in ("mode", "success_url") if not params.get(name)]
        if missing or not params.get("line_items"):
            self._error(400, "invalid_request_error", "parameter_missing",
                        f"Missing required param: {(missing or ['line_items'])[0]}.", (missing or ["line_items"])[0])
            return
        session_id = f"cs_test_{secrets.token_hex(12)}"
        amount = sum(int(item.get("quantity", 1)) * int(item["price_data"]["unit_amount"])
                     for item in params["line_items"])
        session = {
            "id": session_id, "object": "checkout.session", "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "mode": params["mode"], "status": "open", "payment_status": "unpaid", "amount_total": amount,
            "currency": params["line_items"][0]["price_data"]["currency"],
            "client_reference_id": params.get("client_reference_id"), "customer_email": params.get("customer_email"),
            "metadata": params.get("metadata", {}), "payment_intent": None, "livemode": False,
            "success_url": params["success_url"], "cancel_url": params.get("cancel_url"),
            "created": int(time.time()), "expires_at": int(time.time()) + 24 * 3600,
        }
        with self.lock:
            self.server.state["sessions"][session_id] = session
            if key:
                self.server.state["idempotency"][key] = (self.body, session)
        self.send_json(200, session, headers={"Idempotency-Key": key, "Request-Id": f"req_{secrets.token_hex(6)}"})

    def do_GET(self) -> None:
        self.record()
        if not self._authorised():
            return
        match = SESSION_PATH.match(urlsplit(self.path).path)
        if match is None:
            self._error(404, "invalid_request_error", "resource_missing", f"Unrecognized request URL (GET: {self.path}).")
            return
        if self._scripted("retrieve"):
            return
        session = self.server.state["sessions"].get(match["id"])
        if session is None:
            self._error(404, "invalid_request_error", "resource_missing", f"No such checkout.session: '{match['id']}'",
                        "session")
            return
        self.send_json(200, session)

    @classmethod
    def mark_paid(cls, state: dict[str, Any], session_id: str, payment_intent: str) -> dict[str, Any]:
        """What Stripe does when the buyer pays: the session completes, paid, with its PaymentIntent."""
        with cls.lock:
            session = state["sessions"][session_id]
            session.update(status="complete", payment_status="paid", payment_intent=payment_intent)
            return dict(session)


# --- events, as Stripe delivers them (ref §6.3) ----------------------------------------------------------

def event(type_: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None) -> dict[str, Any]:
    return {"id": event_id or f"evt_{secrets.token_hex(12)}", "object": "event", "type": type_,
            "api_version": API_VERSION, "created": created or int(time.time()), "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "data": {"object": obj}}


def session_object(session_id: str, *, user_id: int, pack: str, amount_total: int, payment_status: str = "paid",
                   payment_intent: str | None = "pi_test", currency: str = "usd") -> dict[str, Any]:
    return {"id": session_id, "object": "checkout.session", "mode": "payment",
            "status": "complete", "payment_status": payment_status, "amount_total": amount_total,
            "currency": currency, "client_reference_id": str(user_id), "metadata": {"pack": pack, "user": str(user_id)},
            "payment_intent": payment_intent, "livemode": False}


def charge_object(*, payment_intent: str, amount: int, amount_refunded: int, charge_id: str = "ch_test") -> dict[str, Any]:
    # ref §6.3: `refunded` is true only once the whole amount is refunded.
    return {"id": charge_id, "object": "charge", "amount": amount, "amount_refunded": amount_refunded,
            "refunded": amount_refunded >= amount, "captured": True, "currency": "usd",
            "payment_intent": payment_intent, "livemode": False}


def signed(payload: dict[str, Any], secret: str, *, timestamp: int | None = None) -> tuple[bytes, str]:
    """The raw body and its Stripe-Signature header, made with the SDK's own signing helper (ref §6.3)."""
    body = json.dumps(payload, separators=(",", ":"))
    return body.encode(), stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
