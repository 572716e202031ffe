"""fal's webhooks: the ED25519 signature checked against fal's published keys (fetched, cached and
refetched at a bounded rate when a key rotates), and the callback decoded into a status (§1.4)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import fal_client
import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.cache import cache

from generations.providers.base import ProviderStatus, WebhookEvent, WebhookRejected
from generations.providers.fal.client import ssl_verify
from generations.providers.fal.errors import error_from_http
from generations.providers.fal.io import outputs_from_result
from generations.providers.http import header

# Webhook verification (§1.4).
WEBHOOK_TOLERANCE_SECONDS = 300
JWKS_CACHE_SECONDS = 24 * 3600
# A signature no cached key verifies triggers a JWKS refetch (fal may have rotated its keys) at most once
# per JWKS_REFRESH_MIN_SECONDS *per source address*, so forged webhooks from one place cannot use up the
# refetch a genuine webhook signed with a new key needs; and at most JWKS_REFRESH_MAX_PER_WINDOW times in
# that window from all sources together, so a flood cannot turn us into a JWKS hammer.
JWKS_REFRESH_MIN_SECONDS = 600
JWKS_REFRESH_MAX_PER_WINDOW = 30


def parse_webhook(headers: Mapping[str, str], body: bytes, *, source: str = "") -> WebhookEvent:
    """Verify fal's ED25519 webhook signature (§1.4) and decode the callback. `source` is
    the sender's address: a signature no cached key verifies refetches the keys at most once per
    window per source (see `_verify`)."""
    request_id = header(headers, "x-fal-webhook-request-id")
    user_id = header(headers, "x-fal-webhook-user-id")
    timestamp = header(headers, "x-fal-webhook-timestamp")
    signature_hex = header(headers, "x-fal-webhook-signature")
    if not (request_id and user_id and timestamp and signature_hex):
        raise WebhookRejected("missing fal webhook signature headers")
    try:
        sent_at = int(timestamp)
        signature = bytes.fromhex(signature_hex)
    except ValueError as exc:
        raise WebhookRejected("malformed fal webhook timestamp or signature") from exc
    if abs(time.time() - sent_at) > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRejected("fal webhook timestamp is outside the allowed window")
    message = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()
    if not _verify(message, signature, source=source):
        raise WebhookRejected("fal webhook signature does not verify")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise WebhookRejected("fal webhook body is not JSON") from exc
    if not isinstance(event, dict) or str(event.get("request_id", "")) != request_id:
        raise WebhookRejected("fal webhook body does not match its signed request id")
    return WebhookEvent(request_id=request_id, status=_webhook_status(event))


def _webhook_status(event: Mapping[str, Any]) -> ProviderStatus:
    if event.get("status") == "OK":
        if event.get("payload_error"):
            return ProviderStatus(state="failed", error_code="bad_output",
                                  error_message=f"fal.ai could not deliver the result: {event['payload_error']}")
        outputs = outputs_from_result(event.get("payload"))
        if not outputs:
            return ProviderStatus(state="failed", error_code="no_output",
                                  error_message="fal.ai reported success but returned no file.")
        return ProviderStatus(state="succeeded", progress=100, outputs=outputs, usage={"outputs": len(outputs)})
    # status "ERROR": `error` is e.g. "Invalid status code: 422", `payload` the model's error body.
    error = str(event.get("error") or "fal.ai reported a failure.")
    payload = event.get("payload") if isinstance(event.get("payload"), Mapping) else {}
    match = re.search(r"\b(\d{3})\b", error)
    http_status = int(match.group(1)) if match else 500
    detail = payload.get("detail") if payload else None
    mapped = error_from_http(fal_client.FalClientHTTPError(
        message=detail if detail is not None else error, status_code=http_status, response_headers={},
        response=None, error_type=payload.get("error_type") if payload else None))  # type: ignore[arg-type]
    return ProviderStatus(state="failed", error_code=mapped.code, error_message=mapped.message,
                          retryable=mapped.retryable)


def _verify(message: bytes, signature: bytes, *, source: str) -> bool:
    keys, fresh = _jwks(force=False)
    if _any_key_verifies(keys, message, signature):
        return True
    # Signed with a key we do not hold: fal rotated its keys since we cached them, or the request is
    # forged. fal's webhooks name no key id (only the four X-Fal-Webhook-* headers), so "no cached
    # key verifies" is the only sign of an unknown key; refetch then, rate limited per source.
    if fresh or not _refetch_allowed(source):
        return False
    keys, _ = _jwks(force=True)
    return _any_key_verifies(keys, message, signature)


def _jwks(*, force: bool) -> tuple[list[Ed25519PublicKey], bool]:
    """fal's public keys, cached at most 24 h (§1.4). Returns (keys, fetched_now)."""
    cache_key = f"fal:jwks:{_url_digest()}"
    raw = None if force else cache.get(cache_key)
    fetched = False
    if raw is None:
        try:
            response = httpx.get(settings.FAL_JWKS_URL, timeout=10.0,
                                 verify=ssl_verify(settings.PROVIDER_CA_BUNDLE))
            response.raise_for_status()
            raw = response.json().get("keys", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise WebhookRejected(f"could not fetch fal's webhook keys: {exc}") from exc
        cache.set(cache_key, raw, JWKS_CACHE_SECONDS)
        fetched = True
    keys = []
    for jwk in raw if isinstance(raw, list) else []:
        if not (isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"):
            continue
        try:
            x = str(jwk["x"])
            keys.append(Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))))
        except (KeyError, ValueError, binascii.Error):
            continue
    return keys, fetched


def _url_digest() -> str:
    return hashlib.sha256(settings.FAL_JWKS_URL.encode()).hexdigest()[:16]


def _refetch_allowed(source: str) -> bool:
    """One JWKS refetch per source address per window, and a ceiling for all sources together.

    The old single global slot let one forger, sending a bad signature every ten minutes, keep us from
    ever refetching: a genuine webhook signed with a rotated key was refused until the 24 h cache ran
    out (fal retries a webhook for 2 hours, and the sweep polls parked jobs, so it is a delay, not a
    loss). Keyed per source, a forger only spends its own slot."""
    digest = _url_digest()
    who = hashlib.sha256(_sender(source).encode()).hexdigest()[:16]
    if not cache.add(f"fal:jwks-refresh:{digest}:{who}", True, JWKS_REFRESH_MIN_SECONDS):
        return False
    window = int(time.time() // JWKS_REFRESH_MIN_SECONDS)
    total_key = f"fal:jwks-refresh-total:{digest}:{window}"
    cache.add(total_key, 0, JWKS_REFRESH_MIN_SECONDS * 2)
    try:
        total = cache.incr(total_key)
    except ValueError:  # expired between add and incr
        cache.add(total_key, 1, JWKS_REFRESH_MIN_SECONDS * 2)
        total = 1
    return total <= JWKS_REFRESH_MAX_PER_WINDOW


def _sender(source: str) -> str:
    """The unit a refetch slot belongs to: an IPv4 address, or an IPv6 address's /64. One host is
    routinely given a whole /64, so keyed per IPv6 address a single forger would have endless slots and
    could spend the ceiling shared by every sender."""
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return source or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _any_key_verifies(keys: list[Ed25519PublicKey], message: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False
