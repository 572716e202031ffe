"""Turning a provider's outputs into the user's assets."""

from __future__ import annotations

from typing import Any

from assets.inspection import RefusedFile
from assets.models import Asset, AssetSource
from assets.services import asset_create_from_bytes
from generations.inputs import asset_fields
from generations.models import Generation
from generations.providers.base import Output, ProviderError


def _parent_asset(generation: Generation) -> Asset | None:
    """The first input asset: an upscale's or an edit's source, so lineage can be followed."""
    for name in asset_fields(generation.model.input_schema):
        asset_id = generation.inputs.get(name)
        if asset_id:
            return Asset.objects.filter(pk=asset_id, owner_id=generation.project.owner_id).first()
    return None


def outputs_store(*, generation: Generation, outputs: list[Output]) -> list[Asset]:
    """Store each output as an asset of the generation's project, inside the caller's transaction.
    Returns the assets; on any error the caller deletes their files (see services._succeed)."""
    if not outputs:
        raise ProviderError("The provider reported success but returned no output.", code="no_output")
    parent = _parent_asset(generation)
    stored: list[Asset] = []
    for index, output in enumerate(outputs):
        if output.data is None:
            # Only byte outputs exist so far (the local provider). URL outputs need the safe
            # downloader (allow-listed hosts, address checks, size caps) before we fetch anything.
            raise ProviderError("The provider returned an output by URL, which this studio does not "
                                "fetch without its safe downloader.", code="unsupported_output")
        name = output.filename or f"{generation.model.provider_model.replace('/', '-')}-{index + 1}"
        metadata: dict[str, Any] = {
            "recipe": {"model": generation.model_id, "inputs": generation.inputs},
            **output.metadata,
        }
        try:
            asset = asset_create_from_bytes(project=generation.project, data=output.data, name=name,
                                            source=AssetSource.GENERATION, generation=generation,
                                            parent=parent, metadata=metadata)
        except RefusedFile as exc:
            for done in stored:
                done.file.storage.delete(done.file.name)
            raise ProviderError(f"The provider's output was refused: {exc.message}", code="bad_output") from exc
        stored.append(asset)
    return stored
