"""What the fal tests share besides their fixtures (conftest.py): the catalog's fal models, an input image,
polling a job to its end, and the fake's submits."""

from __future__ import annotations

import json
from typing import Any

from generations.catalog import CATALOG_DIR
from generations.providers.base import CatalogModel, ProviderJob, ProviderStatus
from generations.providers.fal.adapter import FalProvider
from tests.fakes.assets import InMemoryAsset
from tests.fakes.server import FakeServer
from tests.providers.support import poll_to_end

CATALOG = {entry["id"]: entry for entry in json.loads((CATALOG_DIR / "fal.json").read_text())["models"]}


def catalog_model(model_id: str, **config: Any) -> CatalogModel:
    entry = CATALOG[model_id]
    return CatalogModel(id=entry["id"], provider="fal", provider_model=entry["provider_model"],
                        operation=entry["operation"], output_kind=entry["output_kind"],
                        config={**entry.get("config", {}), **config})


SCHNELL = "fal-ai/flux/schnell"


def image_asset(data: bytes, name: str = "photo.png") -> InMemoryAsset:
    return InMemoryAsset(id="a1", kind="image", mime="image/png", name=name, storage_name="", size=len(data),
                         data=data)


def run_to_end(provider: FalProvider, job: ProviderJob, limit: int = 20) -> list[ProviderStatus]:
    return poll_to_end(provider, job, polls=limit)


def submits(server: FakeServer) -> list[dict[str, Any]]:
    return [r for r in server.requests if r["method"] == "POST" and not r["path"].startswith(("/storage", "/files"))]
