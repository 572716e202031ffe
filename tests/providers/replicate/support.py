"""What the Replicate tests share besides their fixture (conftest.py): the catalog's Replicate models, an
input image, polling a prediction to its end, and what the fake was sent and serves."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

from generations.catalog import CATALOG_DIR
from generations.providers.base import CatalogModel, ProviderJob, ProviderStatus
from generations.providers.replicate import ReplicateProvider
from tests.fakes.assets import InMemoryAsset
from tests.fakes.server import FakeServer
from tests.providers.support import poll_to_end

CATALOG = {entry["id"]: entry for entry in json.loads((CATALOG_DIR / "replicate.json").read_text())["models"]}


def catalog_model(model_id: str) -> CatalogModel:
    entry = CATALOG[model_id]
    return CatalogModel(id=model_id, provider="replicate", provider_model=entry["provider_model"],
                        operation=entry["operation"], output_kind=entry["output_kind"],
                        config=dict(entry.get("config", {})))


def png(size: tuple[int, int] = (40, 30), color: str = "navy") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def image_input(data: bytes | None = None) -> InMemoryAsset:
    data = data or png()
    return InMemoryAsset(id="a1", kind="image", mime="image/png", name="in.png", storage_name="", size=len(data),
                         data=data)


def run_to_end(provider: ReplicateProvider, job: ProviderJob, limit: int = 20) -> list[ProviderStatus]:
    return poll_to_end(provider, job, polls=limit)


def requests_to(server: FakeServer, method: str, path_prefix: str) -> list[dict[str, Any]]:
    return [r for r in server.requests if r["method"] == method and r["path"].startswith(path_prefix)]


def served(server: FakeServer, url: str) -> bytes:
    return server.state["files"][url.split(str(server.port), 1)[1]][0]
