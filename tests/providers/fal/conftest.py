"""The fal tests' fixtures: the TLS fake of fal's queue, storage, CDN and JWKS (tests/fakes/fal.py) with
settings pointed at it, and a fresh adapter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generations.providers.fal.adapter import FalProvider
from tests.fakes.fal import FalFakeServer
from tests.fakes.server import FakeServer, LocalCA


@pytest.fixture
def fal(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    ca = LocalCA(tmp_path / "ca")
    # The fake serves outputs from 127.0.0.1 rather than *.fal.media; allow that host for downloads
    # (its address is allowed by OUTPUT_FETCH_PRIVATE_ALLOWLIST below).
    monkeypatch.setattr(FalProvider, "output_hosts", (*FalProvider.output_hosts, "127.0.0.1"))
    with FalFakeServer(ca=ca) as server:
        settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "fal": "test-key"}
        settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "fal": server.url}
        settings.PROVIDER_CA_BUNDLE = str(ca.ca_file)
        settings.FAL_JWKS_URL = f"{server.url}/.well-known/jwks.json"
        settings.OUTPUT_FETCH_PRIVATE_ALLOWLIST = [f"127.0.0.1:{server.port}"]
        settings.GENERATION_POLL_INTERVAL = 0.01
        # The JWKS cache must not outlive the fake that served the keys.
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                       "LOCATION": f"fal-tests-{server.port}"}}
        yield server


@pytest.fixture
def provider() -> FalProvider:
    return FalProvider()
