"""Assets for adapter-level tests: an `AssetInput` whose bytes live in memory instead of Django storage,
so a provider can be driven without a database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generations.providers.base import AssetInput


@dataclass
class InMemoryAsset(AssetInput):
    """An AssetInput whose bytes live in memory instead of Django storage."""

    data: bytes = b""

    def read(self) -> bytes:
        return self.data


def image_asset(data: bytes, name: str = "picture.png", **extra: Any) -> InMemoryAsset:
    """A PNG the user uploaded, as the runner would hand it to a provider."""
    fields: dict[str, Any] = {"id": "a1", "kind": "image", "mime": "image/png", "name": name, "storage_name": "",
                              "size": len(data), "data": data}
    return InMemoryAsset(**{**fields, **extra})
