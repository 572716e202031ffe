"""The Replicate tests' fixture: the TLS fake of Replicate's API (tests/fakes/replicate.py), with settings
pointed at it and its outputs' host allowed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generations.providers.replicate import ReplicateProvider
from tests.fakes.replicate import ReplicateFake
from tests.fakes.server import FakeServer, LocalCA
from tests.providers.replicate.support import CATALOG


@pytest.fixture
def fake(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    ca = LocalCA(tmp_path / "ca")
    server = FakeServer(ReplicateFake, ca=ca)
    # serve_forever's default 0.5 s poll makes every teardown wait up to half a second for shutdown().
    server.thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                     daemon=True)
    with server:
        ReplicateFake.install(server.state)
        server.state["versions"] = {entry["config"]["version"]: entry["provider_model"]
                                    for entry in CATALOG.values() if entry.get("config", {}).get("version")}
        settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "replicate": "test-key"}
        settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "replicate": server.url}
        settings.PROVIDER_CA_BUNDLE = str(ca.ca_file)
        settings.REPLICATE_WEBHOOK_SECRET = server.state["webhook_secret"]
        settings.OUTPUT_FETCH_PRIVATE_ALLOWLIST = [f"127.0.0.1:{server.port}"]
        settings.PROVIDER_WEBHOOKS = False
        settings.GENERATION_POLL_INTERVAL = 0.01
        # Real outputs come from replicate.delivery; the fake serves them itself on 127.0.0.1.
        monkeypatch.setattr(ReplicateProvider, "output_hosts", (*ReplicateProvider.output_hosts, "127.0.0.1"))
        yield server
