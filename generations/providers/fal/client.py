"""The fal-client SDK's client, pointed where settings say (a gateway, or a test fake) and trusting the
configured CA bundle; one per key, re-used so connections are pooled.

Three things the SDK does not let us configure per client, and what we do instead:

- **Where requests go.** fal-client builds URLs from module globals fixed at import time
  (`QUEUE_URL_FORMAT = f"https://{FAL_QUEUE_RUN_HOST}/"`, `REST_URL`, `CDN_URL`). Rather than rewrite
  those process-wide globals on every call, our `SyncClient` subclass gives the SDK an httpx client
  whose transport sends requests for fal's own hosts to `settings.PROVIDER_BASE_URLS["fal"]` (a
  gateway, or a test fake) and leaves every other URL alone. The SDK still builds every URL and
  still follows the status/response/cancel URLs the queue hands back, so nothing is hand-written.
- **Which CAs are trusted.** The SDK's httpx clients use the system store; the transport above is
  built with `verify=` `settings.PROVIDER_CA_BUNDLE` when set (the TLS fakes' local CA).
- **Retries.** The SDK retries 408/409/429, ingress 502-504 and transport errors up to
  `MAX_ATTEMPTS = 10` times with backoff up to 30 s, ignoring Retry-After. Our pipeline already does
  bounded, typed retries with backoff that honour Retry-After (generations.runner), and retrying in
  two layers multiplies the waits, so the SDK's loop is switched off (one attempt). That knob exists
  only as a module global; nothing else in this process uses fal-client.
"""

from __future__ import annotations

import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import fal_client
import fal_client.client as fal_sdk
import httpx
from django.conf import settings

fal_sdk.MAX_ATTEMPTS = 1  # see the module docstring: the pipeline owns retries

# fal's own hosts (fal_client/client.py RUN_URL_FORMAT, QUEUE_URL_FORMAT, REST_URL, CDN_URL and
# _BACKUP_DOMAINS); requests to these go to the configured base URL when there is one.
FAL_HOSTS = frozenset({"fal.run", "queue.fal.run", "falrun.com", "queue.falrun.com", "rest.fal.ai",
                       "v3.fal.media"})

SUBMIT_TIMEOUT_SECONDS = 30.0  # the SDK's default is 120 s; status/result/cancel use its QUEUE_POLL_TIMEOUT


class _RoutedTransport(httpx.BaseTransport):
    """Sends requests for fal's hosts to `base_url` (scheme, host, port and path prefix); others pass
    through unchanged. Rebuilds the request the way the SDK's own `_backup_request` does."""

    def __init__(self, base_url: str, inner: httpx.BaseTransport) -> None:
        self.base = httpx.URL(base_url.rstrip("/") + "/")
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in FAL_HOSTS:
            url = request.url.copy_with(scheme=self.base.scheme, host=self.base.host, port=self.base.port,
                                        path=self.base.path.rstrip("/") + request.url.path)
            headers = request.headers.copy()
            headers["Host"] = url.netloc.decode("ascii")
            request = httpx.Request(request.method, url, headers=headers, stream=request.stream,
                                    extensions=request.extensions.copy())
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def ssl_verify(ca_bundle: str) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True



class _TokenManager(fal_sdk.CDNTokenManager):
    """The SDK's CDN upload-token manager, fetching through our configured httpx client (the SDK's
    own `_refresh_token` opens a bare `httpx.Client()`, which neither routes nor trusts our CA)."""

    def __init__(self, auth: Any, http: httpx.Client) -> None:
        super().__init__(auth)
        self._http = http

    def _refresh_token(self) -> fal_sdk.CDNToken:
        # Same request and parsing as CDNTokenManager._refresh_token (fal_client/client.py), but errors
        # surface as FalClientHTTPError with fal's `detail`, like every other SDK call.
        response = fal_sdk._request(self._http, "POST", self._url, headers=self._headers, json={})
        data = response.json()
        return fal_sdk.CDNToken(token=data["token"], token_type=data["token_type"],
                                base_upload_url=data["base_url"],
                                expires_at=datetime.fromisoformat(data["expires_at"]))

    def refresh(self) -> fal_sdk.CDNToken:
        with self._lock:
            self._token = self._refresh_token()
            return self._token


@dataclass(frozen=True)
class StudioFalClient(fal_client.SyncClient):
    """`fal_client.SyncClient` with a base URL and CA bundle. Only how its httpx clients are built
    changes; every request is still made by the SDK."""

    base_url: str = ""
    ca_bundle: str = ""

    def _transport(self) -> httpx.BaseTransport:
        inner = httpx.HTTPTransport(verify=ssl_verify(self.ca_bundle))
        if self.base_url:
            return _RoutedTransport(self.base_url, inner)
        # No override: keep the SDK's fallback to falrun.com when fal.run is unreachable.
        return fal_sdk.BackupDomainTransport(transport=inner)

    @cached_property
    def _client(self) -> httpx.Client:
        return httpx.Client(transport=self._transport(),
                            headers={"Authorization": self._auth.header_value, "User-Agent": fal_sdk.USER_AGENT},
                            timeout=self.default_timeout, follow_redirects=True)

    @cached_property
    def _token_manager(self) -> _TokenManager:
        return _TokenManager(self._auth, self._client)

    def _get_cdn_client(self) -> httpx.Client:
        token = self._token_manager.get_token()
        return httpx.Client(transport=self._transport(),
                            headers={"Authorization": f"{token.token_type} {token.token}",
                                     "User-Agent": fal_sdk.USER_AGENT},
                            timeout=self.default_timeout)

    def handle(self, data: Mapping[str, Any], request_id: str) -> fal_client.SyncRequestHandle:
        """A handle on a submitted request, from the URLs the queue returned at submit."""
        return fal_client.SyncRequestHandle(request_id=request_id, response_url=data["response_url"],
                                            status_url=data["status_url"], cancel_url=data["cancel_url"],
                                            client=self._client)


_clients: OrderedDict[tuple[str, str, str], StudioFalClient] = OrderedDict()
_clients_lock = threading.Lock()
MAX_CACHED_CLIENTS = 64  # one per (key, base URL, CA bundle); users' own keys make this more than one


def fal_client_for(api_key: str) -> StudioFalClient:
    """A client for this key and the current settings, re-used so connections are pooled."""
    base_url = settings.PROVIDER_BASE_URLS.get("fal", "")
    ca_bundle = settings.PROVIDER_CA_BUNDLE
    cache_key = (api_key, base_url, ca_bundle)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            client = StudioFalClient(key=api_key, default_timeout=SUBMIT_TIMEOUT_SECONDS,
                                     base_url=base_url, ca_bundle=ca_bundle)
            _clients[cache_key] = client
            while len(_clients) > MAX_CACHED_CLIENTS:
                _, old = _clients.popitem(last=False)
                if "_client" in old.__dict__:
                    old._client.close()
        else:
            _clients.move_to_end(cache_key)
        return client

