"""Turning a provider's outputs into the user's assets."""

from __future__ import annotations

from typing import IO, Any

from assets.models import Asset, AssetSource
from assets.services import asset_create
from assets.uploads.inspection import RefusedFile
from generations.inputs import asset_fields
from generations.models import Generation
from generations.providers.base import Output, ProviderError


def _parent_asset(generation: Generation) -> Asset | None:
    """The first input asset: an upscale's or an edit's source, so lineage can be followed. "First" is
    the schema's `required` list order (a JSON array keeps its order on PostgreSQL; jsonb object keys do
    not), then the other asset inputs by name: an inpaint's parent is its image, never its mask."""
    schema = generation.model.input_schema
    fields = set(asset_fields(schema))
    required = [name for name in schema.get("required", []) if name in fields]
    for name in [*required, *sorted(fields - set(required))]:
        asset_id = generation.inputs.get(name)
        if asset_id:
            return Asset.objects.filter(pk=asset_id, owner_id=generation.project.owner_id).first()
    return None


def outputs_store(*, generation: Generation, prepared: list[tuple[Output, IO[bytes], int]]) -> list[Asset]:
    """Store each output (already copied to a local file by services._fetch_outputs) as an asset of
    the generation's project, inside the caller's transaction. Returns the assets; on any error the
    caller deletes their files (see services._succeed)."""
    if not prepared:
        raise ProviderError("The provider reported success but returned no output.", code="no_output")
    parent = _parent_asset(generation)
    stored: list[Asset] = []
    for index, (output, fh, size) in enumerate(prepared):
        name = output.filename or f"{generation.model.provider_model.replace('/', '-')}-{index + 1}"
        metadata: dict[str, Any] = {
            "recipe": {"model": generation.model_id, "inputs": generation.inputs},
            **output.metadata,
        }
        try:
            asset = asset_create(project=generation.project, fh=fh, name=name, size=size,
                                 source=AssetSource.GENERATION, generation=generation, parent=parent,
                                 metadata=metadata)
        except RefusedFile as exc:
            for done in stored:
                done.file.storage.delete(done.file.name)
            raise ProviderError(f"The provider's output was refused: {exc.message}", code="bad_output") from exc
        stored.append(asset)
    return stored
