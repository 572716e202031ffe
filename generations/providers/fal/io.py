"""What crosses the wire to fal and back: our validated inputs as a model's fal arguments (assets
inline as data URIs, or uploaded to fal's CDN), and the Files in a fal result as Outputs."""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import fal_client

from generations.providers.base import AssetInput, CatalogModel, Output, OutputKind, ProviderError, as_output_kind
from generations.providers.fal.client import StudioFalClient

# Inputs up to this size go inline as data URIs (fal_client.encode; model inputs accept them: §1.3 in
# docs/providers/fal.md); bigger files go through the SDK's upload to fal's CDN so request bodies stay small.
INLINE_INPUT_MAX_BYTES = 256 * 1024

MESH_MIMES = {"model/gltf-binary": ".glb", "model/obj": ".obj"}


def _encode_asset(client: StudioFalClient, asset: AssetInput) -> str:
    data = asset.read()
    if len(data) <= INLINE_INPUT_MAX_BYTES:
        return fal_client.encode(data, asset.mime)
    return client.upload(data, asset.mime, file_name=asset.name or None)


def build_arguments(model: CatalogModel, inputs: Mapping[str, Any], client: StudioFalClient) -> dict[str, Any]:
    """Our validated inputs → the model's fal arguments. Input names in the catalog are fal's own;
    `config` describes the few reshapings (see generations/catalog/fal.json)."""
    config = model.config
    arguments: dict[str, Any] = {}
    for name, value in inputs.items():
        if value is None:
            continue
        if isinstance(value, AssetInput):
            value = _encode_asset(client, value)
        arguments[name] = value
    size_fields = config.get("image_size_fields")
    if size_fields:
        width, height = (arguments.pop(field, None) for field in size_fields)
        if width and height:
            arguments["image_size"] = {"width": int(width), "height": int(height)}
    for name in config.get("string_fields", []):
        if name in arguments:
            arguments[name] = str(arguments[name])
    for name, value in config.get("extra_arguments", {}).items():
        arguments.setdefault(name, value)
    return arguments


def _file_kind(mime: str, name: str) -> OutputKind:
    major = as_output_kind(mime.split("/", 1)[0])
    if major in ("image", "video", "audio"):
        return major
    if mime in MESH_MIMES or name.lower().endswith((".glb", ".gltf", ".obj")):
        return "mesh"
    if major == "text":
        return "text"
    return "other"


def _output_from_file(value: Mapping[str, Any], *, kind_hint: str | None) -> Output | None:
    """One fal `File` ({url, content_type, file_name, file_size, width, height}) as an Output. A
    `data:` URL (sync_mode, §1.3) is decoded here; https URLs are fetched by
    generations.fetch from `output_hosts`."""
    url = value.get("url")
    if not isinstance(url, str) or not url:
        return None
    mime = str(value.get("content_type") or "")
    name = str(value.get("file_name") or "")
    data = None
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        try:
            data = base64.b64decode(payload) if header.endswith(";base64") else unquote(payload).encode()
        except (binascii.Error, ValueError) as exc:
            raise ProviderError("fal.ai returned a malformed data URI.", code="bad_output") from exc
        mime = mime or header[5:].split(";", 1)[0]
        url = None
    elif not name:
        name = PurePosixPath(urlsplit(url).path).name
    mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if mime == "application/octet-stream" and name:
        mime = mimetypes.guess_type(name)[0] or mime
    kind = _file_kind(mime, name)
    if kind == "other":
        kind = as_output_kind(kind_hint) or kind
    if kind == "mesh" and "." not in name:
        name = f"model{MESH_MIMES.get(mime, '.glb')}"
    metadata = {key: value[key] for key in ("width", "height", "file_size") if value.get(key) is not None}
    return Output(kind=kind, mime=mime, data=data, url=url, filename=name, metadata=metadata)


def _files_in(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping) and "url" in value:
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping) and "url" in item]
    return []


def outputs_from_result(result: Any, *, fields: list[str] | None = None, kind_hint: str | None = None) -> list[Output]:
    """The files in a model's result. With `fields` (the catalog's `result_field`), only those; else
    every top-level File or list of Files (webhooks, which do not say which model they are for)."""
    if not isinstance(result, Mapping):
        return []
    names = fields if fields else list(result.keys())
    outputs = []
    for name in names:
        for item in _files_in(result.get(name)):
            output = _output_from_file(item, kind_hint=kind_hint)
            if output is not None:
                outputs.append(output)
    return outputs


def result_fields(config: Mapping[str, Any]) -> list[str]:
    field = config.get("result_field")
    if isinstance(field, str):
        return [field]
    return list(field or [])
