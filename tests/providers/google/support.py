"""What the Google tests share besides their fixtures (conftest.py): the catalog's Google models, an
input asset, running a job to its end, and what the fake was sent."""

from __future__ import annotations

import json
from typing import Any

from generations.catalog import CATALOG_DIR
from generations.providers.base import CatalogModel, ProviderJob, ProviderStatus
from generations.providers.google.adapter import GoogleProvider
from tests.fakes.assets import InMemoryAsset
from tests.fakes.server import FakeServer
from tests.providers.support import poll_to_end

CATALOG = json.loads((CATALOG_DIR / "google.json").read_text())
ENTRIES = {entry["id"]: entry for entry in CATALOG["models"]}


def catalog_model(model_id: str) -> CatalogModel:
    entry = ENTRIES[model_id]
    return CatalogModel(id=entry["id"], provider="google", provider_model=entry["provider_model"],
                        operation=entry["operation"], output_kind=entry["output_kind"],
                        config=entry.get("config", {}))


def asset(data: bytes, *, kind: str = "image", mime: str = "image/png", name: str = "frame.png") -> InMemoryAsset:
    return InMemoryAsset(id="a1", kind=kind, mime=mime, name=name, storage_name="", size=len(data), data=data)


KEY = {"api_key": "test-key"}


def run_to_end(provider: GoogleProvider, job: ProviderJob, limit: float = 10.0) -> list[ProviderStatus]:
    """Every status up to the terminal one. Synchronous calls run on a thread, so `running` may repeat."""
    return poll_to_end(provider, job, seconds=limit, pause=0.005)


def finish(provider: GoogleProvider, model_id: str, inputs: dict[str, Any],
           credentials: dict[str, str] | None = KEY) -> ProviderStatus:
    return run_to_end(provider, provider.submit(catalog_model(model_id), inputs, credentials=credentials))[-1]


def paths(server: FakeServer) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in server.requests]


def sent(server: FakeServer, index: int = -1) -> dict[str, Any]:
    return json.loads(server.requests[index]["body"] or b"null")
