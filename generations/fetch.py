"""Copying provider outputs into our storage: a downloader that cannot be turned against us.

Providers hand back output files by URL (fal's CDN, replicate.delivery) and some delete them within
the hour, so outputs are copied at once. A URL in a provider's response is still data we did not
choose, so every fetch is held to these rules:

- https only; the host must be on the provider's allow-list (`Provider.output_hosts`), checked again
  at every redirect hop, and there are at most OUTPUT_FETCH_MAX_REDIRECTS hops;
- every address the host resolves to must be a public unicast address: no loopback, private,
  link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast or reserved ranges.
  The check happens inside the connection itself (`_GuardedBackend.connect_tcp`), on the addresses
  actually dialled, so DNS rebinding between a check and the connect cannot slip through;
- a size cap per kind, enforced on the declared Content-Length and again while streaming;
- connect/read timeouts; proxies from the environment are ignored;
- the type is decided later from the bytes (assets.uploads.inspection), never from the Content-Type.

`data:` URIs (fal's sync_mode, Replicate's small outputs) are decoded locally under the same caps.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import httpcore
import httpx
from django.conf import settings

from assets.uploads.inspection import SIZE_LIMITS
from generations.providers.base import Output, ProviderError, ProviderStatus

SPOOL_IN_MEMORY = 8 * 1024 * 1024  # larger downloads go to a temporary file

# One output ready to store: what the provider said about it, its bytes in a local file, their length.
Prepared = tuple[Output, IO[bytes], int]


class FetchRefused(Exception):
    def __init__(self, message: str, *, code: str = "output_refused", retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


@dataclass
class Fetched:
    file: IO[bytes]
    size: int
    content_type: str


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def _address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, refuses the connection unless every address is public (or the
    exact host:port is on the test allow-list), and dials the checked address. TLS still verifies
    the certificate against the URL's host name (httpcore passes it as server_hostname)."""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchRefused(f"The output host {host!r} does not resolve.", code="output_unreachable",
                               retryable=True) from exc
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        allow_private = f"{host}:{port}" in settings.OUTPUT_FETCH_PRIVATE_ALLOWLIST
        if not allow_private and not all(_address_is_public(a) for a in addresses):
            raise FetchRefused(f"The output host {host!r} resolves to a non-public address; not fetched.")
        return super().connect_tcp(addresses[0], port, timeout=timeout, local_address=local_address,
                                   socket_options=socket_options)


def _ssl_context() -> ssl.SSLContext:
    cafile = settings.PROVIDER_CA_BUNDLE or None
    return ssl.create_default_context(cafile=cafile)


def _client() -> httpx.Client:
    transport = httpx.HTTPTransport(retries=0)
    # httpx does not take a network backend; the pool it builds is replaced by one that dials
    # through the guard (same options). Pinned httpx/httpcore versions in uv.lock keep this honest.
    transport._pool = httpcore.ConnectionPool(ssl_context=_ssl_context(), network_backend=_GuardedBackend(),
                                              max_connections=4, retries=0)
    timeout = httpx.Timeout(settings.OUTPUT_FETCH_TIMEOUT, connect=10.0)
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


def _spool() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)


def _decode_data_uri(uri: str, limit: int) -> Fetched:
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise FetchRefused("The output is a malformed data: URI.")
    if len(payload) > limit * 4 // 3 + 16:
        raise FetchRefused(f"The output is larger than the {limit // (1024 * 1024)} MB limit.", code="output_too_large")
    try:
        data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise FetchRefused("The output's data: URI is not valid base64.") from exc
    spool = _spool()
    spool.write(data)
    spool.seek(0)
    return Fetched(file=spool, size=len(data), content_type=header.split(";", 1)[0])


def fetch_output(url: str, *, allowed_hosts: Iterable[str], kind: str) -> Fetched:
    """Download one output under the rules above, into a spooled temporary file."""
    limit = SIZE_LIMITS.get(kind, SIZE_LIMITS["image"])
    if url.startswith("data:"):
        return _decode_data_uri(url, limit)
    allowed = tuple(allowed_hosts)
    with _client() as client:
        for _hop in range(settings.OUTPUT_FETCH_MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme != "https":
                raise FetchRefused("Outputs are only fetched over https.")
            if not parts.hostname or not host_allowed(parts.hostname, allowed):
                raise FetchRefused(f"The output host {parts.hostname!r} is not one this provider serves files from.")
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        url = urljoin(url, location)
                        continue
                    if response.status_code >= 500 or response.status_code == 429:
                        raise FetchRefused(f"The output host answered {response.status_code}.",
                                           code="output_unavailable", retryable=True)
                    if response.status_code != 200:
                        raise FetchRefused(f"The output could not be downloaded (HTTP {response.status_code}).",
                                           code="output_unavailable")
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise FetchRefused(f"The output is larger than the {limit // (1024 * 1024)} MB limit.",
                                           code="output_too_large")
                    spool, size = _spool(), 0
                    for chunk in response.iter_bytes(64 * 1024):
                        size += len(chunk)
                        if size > limit:
                            spool.close()
                            raise FetchRefused(f"The output is larger than the {limit // (1024 * 1024)} MB limit.",
                                               code="output_too_large")
                        spool.write(chunk)
                    spool.seek(0)
                    return Fetched(file=spool, size=size, content_type=response.headers.get("content-type", ""))
            except FetchRefused:
                raise
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, FetchRefused):
                    raise cause from None
                raise FetchRefused(f"Downloading the output failed: {exc.__class__.__name__}.",
                                   code="output_unavailable", retryable=True) from exc
        raise FetchRefused("The output URL redirected too many times.")


def outputs_fetch(provider: Any, status: ProviderStatus) -> list[Prepared]:
    """Copy every output of a finished job into local spooled files, outside any transaction (network
    I/O): bytes the provider returned inline as they are, URLs through `fetch_output` with the
    adapter's `output_hosts`. A refused download is a ProviderError with the refusal's code."""
    prepared: list[Prepared] = []
    for output in status.outputs:
        if output.data is not None:
            prepared.append((output, io.BytesIO(output.data), len(output.data)))
            continue
        try:
            fetched = fetch_output(output.url or "", allowed_hosts=getattr(provider, "output_hosts", ()),
                                   kind=output.kind)
        except FetchRefused as exc:
            raise ProviderError(exc.message, code=exc.code, retryable=exc.retryable) from exc
        prepared.append((output, fetched.file, fetched.size))
    return prepared
