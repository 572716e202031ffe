"""The google-genai client for a key, in Developer API or Vertex express mode, with our base URL, CA
bundle, timeout and retry settings; and which key a call uses."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from django.conf import settings
from google import genai
from google.genai import types

from generations.providers.base import ProviderError

PROVIDER = "google"

# google-genai 3.4.0 defaults the Developer API to "v1" (_api_client.GOOGLE_AI_API_DEFAULT_VERSION;
# 1.x and 2.x used "v1beta"). We pin the version instead of inheriting a default that changed between
# majors, and pin "v1beta" because that is the surface ai.google.dev documents for generateContent with
# system instructions, thinking config and image output (imageConfig / responseModalities). A catalog
# entry can override it with config["api_version"].
DEVELOPER_API_VERSION = "v1beta"
# The SDK's own default in Vertex mode (GOOGLE_GENAI_API_VERSION unset); pinned for the same reason.
VERTEX_API_VERSION = "v1beta1"


def api_key_for(credentials: Mapping[str, str] | None) -> str:
    # The runner passes the key the job was submitted on (generations.credentials), on submit and on
    # every polled job (ProviderJob.credentials). The platform key is only the fallback for direct calls.
    key = (credentials or {}).get("api_key") or settings.PROVIDER_KEYS.get(PROVIDER, "")
    if not key:
        raise ProviderError("No Google API key is configured (set GEMINI_API_KEY, or save your own key).",
                            code="missing_key", retryable=False)
    return key


def genai_client(api_key: str, *, vertex: bool, timeout: float, api_version: str | None = None) -> genai.Client:
    options = types.HttpOptions(
        # Empty setting: the SDK's default host (generativelanguage.googleapis.com, or
        # aiplatform.googleapis.com in Vertex express mode). Set: both modes use it (tests, gateways).
        base_url=settings.PROVIDER_BASE_URLS.get(PROVIDER) or None,
        api_version=api_version or (VERTEX_API_VERSION if vertex else DEVELOPER_API_VERSION),
        timeout=int(timeout * 1000),  # HttpOptions.timeout is in milliseconds
        retry_options=types.HttpRetryOptions(attempts=1),  # see the package docstring (generations.providers.google)
    )
    if settings.PROVIDER_CA_BUNDLE:
        options.client_args = {"verify": ssl.create_default_context(cafile=settings.PROVIDER_CA_BUNDLE)}
    return genai.Client(vertexai=vertex, api_key=api_key, http_options=options)
