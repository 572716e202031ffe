"""fal's signed webhooks: verification against the fake's JWKS, decoding, and the bounded refetch when
keys rotate (generations/providers/fal/webhook.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from generations.providers.base import ProviderJob, WebhookRejected
from generations.providers.fal import webhook as fal_webhook
from generations.providers.fal.adapter import FalProvider
from tests.fakes.fal import sign_webhook, webhook_delivery
from tests.fakes.server import FakeServer
from tests.providers.fal.support import SCHNELL, catalog_model, run_to_end


def finished_job(fal: FakeServer, provider: FalProvider) -> tuple[ProviderJob, dict[str, Any]]:
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    run_to_end(provider, job)
    return job, fal.state["jobs"][job.request_id]["result"]


def test_a_signed_webhook_is_accepted_and_decoded(fal: FakeServer, provider: FalProvider) -> None:
    job, result = finished_job(fal, provider)
    body = webhook_delivery(fal, job.request_id, payload=result)
    event = provider.parse_webhook(sign_webhook(fal, body, request_id=job.request_id), body)
    assert event.request_id == job.request_id
    assert event.status.state == "succeeded"
    assert [o.url for o in event.status.outputs] == [result["images"][0]["url"]]

    # Keys are cached (up to 24 h): a second webhook does not refetch them.
    provider.parse_webhook({k.lower(): v for k, v in sign_webhook(fal, body, request_id=job.request_id).items()},
                           body)
    assert sum(r["path"] == "/.well-known/jwks.json" for r in fal.requests) == 1


def test_a_webhook_reporting_an_error_decodes_to_a_failure_with_fals_message(fal: FakeServer,
                                                                             provider: FalProvider) -> None:
    body = webhook_delivery(fal, "req-1", status="ERROR", error="Invalid status code: 422",
                            payload={"detail": [{"loc": ["body", "prompt"], "msg": "field required",
                                                 "type": "value_error.missing"}]})
    event = provider.parse_webhook(sign_webhook(fal, body, request_id="req-1"), body)
    assert (event.status.state, event.status.error_code, event.status.retryable) == ("failed", "invalid_input", False)
    assert event.status.error_message == "prompt: field required"


def test_a_webhook_with_a_tampered_body_is_refused(fal: FakeServer, provider: FalProvider) -> None:
    job, result = finished_job(fal, provider)
    body = webhook_delivery(fal, job.request_id, payload=result)
    headers = sign_webhook(fal, body, request_id=job.request_id)
    forged = body.replace(b"image-0.jpg", b"evil-0.jpg")
    with pytest.raises(WebhookRejected, match="does not verify"):
        provider.parse_webhook(headers, forged)


def test_a_webhook_signed_with_a_key_fal_does_not_publish_is_refused(fal: FakeServer, provider: FalProvider) -> None:
    body = webhook_delivery(fal, "req-1", payload={"images": []})
    headers = sign_webhook(fal, body, request_id="req-1", key=Ed25519PrivateKey.generate())
    with pytest.raises(WebhookRejected, match="does not verify"):
        provider.parse_webhook(headers, body)


def test_a_webhook_outside_the_five_minute_window_is_refused(fal: FakeServer, provider: FalProvider) -> None:
    body = webhook_delivery(fal, "req-1", payload={"images": []})
    headers = sign_webhook(fal, body, request_id="req-1", timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookRejected, match="window"):
        provider.parse_webhook(headers, body)
    assert not any(r["path"] == "/.well-known/jwks.json" for r in fal.requests)


@pytest.mark.parametrize("missing", ["X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id",
                                     "X-Fal-Webhook-Timestamp", "X-Fal-Webhook-Signature"])
def test_a_webhook_missing_a_signature_header_is_refused(fal: FakeServer, provider: FalProvider,
                                                         missing: str) -> None:
    body = webhook_delivery(fal, "req-1", payload={"images": []})
    headers = sign_webhook(fal, body, request_id="req-1")
    del headers[missing]
    with pytest.raises(WebhookRejected, match="missing"):
        provider.parse_webhook(headers, body)


def test_a_webhook_whose_body_names_another_request_is_refused(fal: FakeServer, provider: FalProvider) -> None:
    body = webhook_delivery(fal, "req-2", payload={"images": []})
    with pytest.raises(WebhookRejected, match="does not match"):
        provider.parse_webhook(sign_webhook(fal, body, request_id="req-1"), body)


def test_rotated_keys_are_picked_up_by_refetching_the_jwks(fal: FakeServer, provider: FalProvider) -> None:
    body = webhook_delivery(fal, "req-1", payload={"images": [{"url": "https://v3.fal.media/files/a.png",
                                                               "content_type": "image/png"}]})
    provider.parse_webhook(sign_webhook(fal, body, request_id="req-1"), body)
    rotated = Ed25519PrivateKey.generate()
    fal.state["jwks_keys"] = [rotated]
    event = provider.parse_webhook(sign_webhook(fal, body, request_id="req-1", key=rotated), body)
    assert event.status.state == "succeeded"
    assert sum(r["path"] == "/.well-known/jwks.json" for r in fal.requests) == 2


def jwks_fetches(fal: FakeServer) -> int:
    return sum(r["path"] == "/.well-known/jwks.json" for r in fal.requests)


def test_forged_webhooks_from_one_address_refetch_the_keys_at_most_once_per_window(
        fal: FakeServer, provider: FalProvider) -> None:
    body = webhook_delivery(fal, "req-1", payload={"images": []})
    provider.parse_webhook(sign_webhook(fal, body, request_id="req-1"), body, source="198.51.100.9")
    assert jwks_fetches(fal) == 1
    for _ in range(5):
        forged = sign_webhook(fal, body, request_id="req-1", key=Ed25519PrivateKey.generate())
        with pytest.raises(WebhookRejected, match="does not verify"):
            provider.parse_webhook(forged, body, source="203.0.113.7")
    assert jwks_fetches(fal) == 2  # one refetch for that address, not one per forged request


def test_forged_webhooks_from_one_ipv6_network_share_one_refetch(fal: FakeServer, provider: FalProvider) -> None:
    # A host is routinely given a whole /64: keyed per address, one forger would have endless refetches
    # and could spend the ceiling that every sender shares.
    body = webhook_delivery(fal, "req-1", payload={"images": []})
    provider.parse_webhook(sign_webhook(fal, body, request_id="req-1"), body, source="2001:db8::1")
    assert jwks_fetches(fal) == 1
    for n in range(5):
        forged = sign_webhook(fal, body, request_id="req-1", key=Ed25519PrivateKey.generate())
        with pytest.raises(WebhookRejected, match="does not verify"):
            provider.parse_webhook(forged, body, source=f"2001:db8:0:7::{n + 1:x}")
    assert jwks_fetches(fal) == 2  # one refetch for the whole /64
    forged = sign_webhook(fal, body, request_id="req-1", key=Ed25519PrivateKey.generate())
    with pytest.raises(WebhookRejected):
        provider.parse_webhook(forged, body, source="2001:db8:0:8::1")  # another network has its own
    assert jwks_fetches(fal) == 3


@pytest.mark.django_db
def test_a_forger_cannot_use_up_the_refetch_a_webhook_signed_with_a_rotated_key_needs(
        fal: FakeServer, client: Any) -> None:
    # Through the webhook view: the sender's address (REMOTE_ADDR here) is the refetch limit's key.
    body = webhook_delivery(fal, "req-unknown", payload={"images": [{"url": "https://v3.fal.media/files/a.png"}]})
    genuine = sign_webhook(fal, body, request_id="req-unknown")
    first = client.post("/webhooks/fal", data=body, content_type="application/json", headers=genuine,
                        REMOTE_ADDR="198.51.100.9")
    assert first.status_code == 404  # verified; no job has that request id
    forged = client.post("/webhooks/fal", data=body, content_type="application/json", REMOTE_ADDR="203.0.113.7",
                         headers=sign_webhook(fal, body, request_id="req-unknown", key=Ed25519PrivateKey.generate()))
    assert forged.status_code == 400 and jwks_fetches(fal) == 2  # the forger's address spent its refetch

    rotated = Ed25519PrivateKey.generate()
    fal.state["jwks_keys"] = [rotated]
    after_rotation = client.post("/webhooks/fal", data=body, content_type="application/json",
                                 headers=sign_webhook(fal, body, request_id="req-unknown", key=rotated),
                                 REMOTE_ADDR="198.51.100.9")
    assert after_rotation.status_code == 404, after_rotation.content  # verified with the refetched key
    assert jwks_fetches(fal) == 3


def test_refetches_from_many_addresses_stop_at_the_ceiling(fal: FakeServer, provider: FalProvider,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fal_webhook, "JWKS_REFRESH_MAX_PER_WINDOW", 2)
    body = webhook_delivery(fal, "req-1", payload={"images": []})
    for n in range(4):
        forged = sign_webhook(fal, body, request_id="req-1", key=Ed25519PrivateKey.generate())
        with pytest.raises(WebhookRejected):
            provider.parse_webhook(forged, body, source=f"203.0.113.{n}")
    assert jwks_fetches(fal) == 1 + 2  # the first fill, then two refetches at most
