"""A provider that does no work: the job is done the moment it is submitted.

With it, a generation's latency is the pipeline's own: the API, the ledger hold, the broker hop, the
claim, the asset ingest and the settlement. Registered only in the bench worker (bench/worker.py).
"""

from __future__ import annotations

import io
import uuid
from typing import Any

from PIL import Image

from generations.providers.base import CatalogModel, Output, ProviderJob, ProviderStatus


def _png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (40, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


# Encoded once: the bench measures storing an output, not drawing one.
PNG = _png()


class InstantProvider:
    name = "bench"

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        return ProviderJob(provider=self.name, request_id=uuid.uuid4().hex, data={"model": model.id})

    def poll(self, job: ProviderJob) -> ProviderStatus:
        return ProviderStatus(state="succeeded", progress=100,
                              outputs=[Output(kind="image", mime="image/png", data=PNG, filename="instant.png")])

    def cancel(self, job: ProviderJob) -> bool:
        return False
