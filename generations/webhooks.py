"""Provider callbacks: verified as each provider documents, then the job is resumed by a worker.

The callback itself does no provider I/O and no downloads: it proves the request came from the
provider (fal: Ed25519 over request id, user id, timestamp and body hash; Replicate: HMAC-SHA256 over
webhook-id, timestamp and body) and hands the event to `generation_webhook_accept`, which finds the job
and resumes it: a worker polls the provider once more and finishes the job through the same code as
polling (one code path for outputs and money). A callback for a job we do not know yet answers 404 so
the provider retries later (a fast job can complete before our worker has stored its request id)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.client_ip import client_ip
from generations.providers.base import WebhookRejected
from generations.providers.registry import PROVIDERS, get_provider
from generations.services import generation_webhook_accept

logger = logging.getLogger(__name__)

# Request bodies larger than this are not webhooks we expect (fal and Replicate send JSON documents).
MAX_WEBHOOK_BYTES = 5 * 1024 * 1024


@csrf_exempt  # authenticated by the provider's signature instead
@require_POST
def provider_webhook(request: HttpRequest, provider: str) -> HttpResponse:
    if provider not in PROVIDERS:
        return JsonResponse({"error": {"code": "not_found", "message": "Unknown provider."}}, status=404)
    adapter = get_provider(provider)
    if not hasattr(adapter, "parse_webhook"):
        return JsonResponse({"error": {"code": "not_found", "message": "This provider has no webhooks."}}, status=404)
    body = request.body
    if len(body) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": {"code": "too_large", "message": "Body too large."}}, status=413)
    try:
        # `source` lets an adapter rate limit per sender what a bad signature may cost (fal's JWKS refetch).
        event = adapter.parse_webhook({k.lower(): v for k, v in request.headers.items()}, body,
                                      source=client_ip(request))
    except WebhookRejected as exc:
        logger.warning("refused %s webhook: %s", provider, exc)
        return JsonResponse({"error": {"code": "invalid_signature", "message": str(exc)}}, status=400)
    if not generation_webhook_accept(provider=provider, request_id=event.request_id,
                                     terminal=event.status.terminal):
        return JsonResponse({"error": {"code": "not_found", "message": "Unknown request."}}, status=404)
    return JsonResponse({"ok": True})
