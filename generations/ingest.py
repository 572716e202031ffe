"""Turning a provider's outputs into the user's assets, and taking them back when the job does not
settle (no orphan rows or files)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction

from assets.models import Asset, AssetSource
from assets.services import asset_create
from assets.storage import files_delete_on_commit
from assets.uploads.inspection import RefusedFile
from generations.fetch import Prepared
from generations.inputs import asset_fields
from generations.models import Generation
from generations.providers.base import ProviderError

# Every stored file of an asset: the original, and previews a worker may have made meanwhile.
FILE_COLUMNS = ("file", "preview", "thumb_small", "thumb_large")


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


def outputs_store(*, generation: Generation, prepared: list[Prepared],
                  beat: Callable[[], None] | None = None) -> list[Asset]:
    """Store each output (already copied to a local file by generations.fetch.outputs_fetch) as an
    asset of the generation's project. Called outside any transaction, before the settle
    (generations.attempts.finish): each asset is committed as it is stored. On any error the ones
    already stored are discarded (rows and files) before it raises. `beat` is called before each one, so
    the runner's heartbeat stays fresh through a long upload and the sweep leaves the job alone."""
    if not prepared:
        raise ProviderError("The provider reported success but returned no output.", code="no_output")
    parent = _parent_asset(generation)
    stored: list[Asset] = []
    try:
        for index, (output, fh, size) in enumerate(prepared):
            if beat:
                beat()
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
                raise ProviderError(f"The provider's output was refused: {exc.message}", code="bad_output") from exc
            stored.append(asset)
    except BaseException:
        outputs_discard(stored)
        raise
    return stored


def outputs_discard_for(generation_id: Any) -> None:
    """Delete what an earlier attempt of this job stored and never settled (its worker died between the
    upload and the settle): a job that has not succeeded owns no assets."""
    outputs_discard(list(Asset.objects.filter(generation_id=generation_id)))


def outputs_discard(assets: list[Asset]) -> None:
    """Delete assets stored for a job that did not settle (canceled or swept while its outputs were
    being stored, or a settle that failed): their rows now, their files once that commits. The rows
    are locked first, as the preview worker locks them to save its files: previews made meanwhile are
    deleted with them, and a preview finished later finds no row and deletes its own files."""
    if not assets:
        return
    ids = [asset.pk for asset in assets]
    with transaction.atomic():
        names = {name for row in Asset.objects.select_for_update().filter(pk__in=ids).values_list(*FILE_COLUMNS)
                 for name in row if name}
        names |= {asset.file.name for asset in assets if asset.file.name}
        Asset.objects.filter(pk__in=ids).delete()
        files_delete_on_commit(sorted(names))
