"""From a model's JSON Schema (its `input_schema`) to HTML form fields, and from posted form data back
to typed inputs.

Only presentation and type coercion live here: whether the inputs are valid is decided by
`generations.inputs.validate_inputs` (through `generation_estimate` / `generation_create`), so the web
form, the API and the CLI accept exactly the same things. Form field names are `inputs.<name>`, the
same keys `InvalidRequest.fields` uses, so service errors land next to their fields unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "inputs."
ASSET_FORMAT = "asset"

# Free text that deserves room to write: prompts, scripts, long strings.
TEXTAREA_NAMES = {"prompt", "negative_prompt", "text", "script", "system_prompt"}
TEXTAREA_MIN_LENGTH = 500


@dataclass
class FormField:
    name: str  # the input's name in the schema ("prompt")
    widget: str  # textarea | text | number | select | checkbox | asset | json
    label: str
    help: str = ""
    required: bool = False
    value: Any = None  # what the widget shows, already a string for inputs and selects
    checked: bool = False
    minimum: Any = None
    maximum: Any = None
    step: Any = None
    max_length: int | None = None
    choices: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def html_name(self) -> str:
        return PREFIX + self.name

    @property
    def html_id(self) -> str:
        return "input-" + self.name.replace("_", "-")


def _json_type(prop: Mapping[str, Any]) -> str:
    kind = prop.get("type", "string")
    if isinstance(kind, list):  # ["integer", "null"]: the first real type decides the widget
        kind = next((k for k in kind if k != "null"), "string")
    return str(kind)


def _label(name: str, prop: Mapping[str, Any]) -> str:
    return str(prop.get("title") or name.replace("_", " ").capitalize())


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_textarea(name: str, prop: Mapping[str, Any]) -> bool:
    return (name in TEXTAREA_NAMES or name.endswith("_prompt")
            or int(prop.get("maxLength") or 0) >= TEXTAREA_MIN_LENGTH)


def asset_label(asset: Any) -> str:
    """'photo.png · image 1024×768' — a select cannot show a thumbnail, so the label says enough."""
    size = f" {asset.width}×{asset.height}" if getattr(asset, "width", None) and asset.height else ""
    return f"{asset.name} · {asset.kind}{size}"


def form_fields(schema: Mapping[str, Any], *, values: Mapping[str, Any] | None = None,
                errors: Mapping[str, list[str]] | None = None, assets: Iterable[Any] = ()) -> list[FormField]:
    """The fields to render, in schema order. `values` are typed inputs (a past generation's inputs, or
    what was just posted); where a value is missing the schema's default is shown. `assets` are the
    project's assets, offered to asset inputs of a matching kind."""
    values = values or {}
    errors = errors or {}
    assets = list(assets)
    required = set(schema.get("required", []))
    fields: list[FormField] = []
    for name, prop in schema.get("properties", {}).items():
        kind = _json_type(prop)
        value = values.get(name, prop.get("default"))
        f = FormField(name=name, widget="text", label=_label(name, prop), help=str(prop.get("description", "")),
                      required=name in required, errors=list(errors.get(PREFIX + name, [])))
        if prop.get("format") == ASSET_FORMAT:
            kinds = prop.get("x-asset-kinds") or []
            f.widget = "asset"
            f.value = _display(value)
            f.choices = [(str(a.pk), asset_label(a)) for a in assets if not kinds or a.kind in kinds]
            if kinds and not f.help:
                f.help = f"One of this project's {' or '.join(kinds)} assets."
        elif "enum" in prop:
            f.widget = "select"
            f.value = _display(value)
            f.choices = [(_display(c), _display(c)) for c in prop["enum"]]
        elif kind == "boolean":
            f.widget = "checkbox"
            f.checked = bool(value)
        elif kind in ("integer", "number"):
            f.widget = "number"
            f.value = _display(value)
            f.minimum = prop.get("minimum")
            f.maximum = prop.get("maximum")
            f.step = prop.get("multipleOf") or (1 if kind == "integer" else "any")
        elif kind == "string":
            f.widget = "textarea" if _is_textarea(name, prop) else "text"
            f.value = _display(value)
            f.max_length = prop.get("maxLength")
        else:  # arrays and objects: edited as JSON, still validated by the schema
            f.widget = "json"
            f.value = json.dumps(value) if value is not None else ""
        fields.append(f)
    unknown = {k: v for k, v in errors.items() if k.startswith(PREFIX) and k[len(PREFIX):] not in
               schema.get("properties", {})}
    if unknown and fields:  # e.g. an additionalProperties error: show it on the first field
        fields[0].errors.extend(m for msgs in unknown.values() for m in msgs)
    return fields


def inputs_from_post(schema: Mapping[str, Any], data: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Typed inputs from a posted form (a QueryDict), plus errors for values that are not even of the
    right type. Empty fields are left out, so the schema's defaults (and the seed picker) apply."""
    inputs: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, prop in schema.get("properties", {}).items():
        key = PREFIX + name
        kind = _json_type(prop)
        raw = data.get(key)  # QueryDict.get is the last value: the checkbox wins over its hidden "false"
        if raw is None:
            continue
        raw = str(raw)
        if "enum" in prop:
            if raw == "":
                continue
            match = [c for c in prop["enum"] if _display(c) == raw]
            if match:
                inputs[name] = match[0]
            else:
                errors[key] = ["Choose one of the offered values."]
            continue
        if raw.strip() == "":
            continue
        if kind == "boolean":
            inputs[name] = raw in ("true", "on", "1")
        elif kind == "string":
            inputs[name] = raw
        elif kind == "integer":
            try:
                number = float(raw)
            except ValueError:
                errors[key] = ["Enter a whole number."]
                continue
            if not number.is_integer():
                errors[key] = ["Enter a whole number."]
                continue
            inputs[name] = int(number)
        elif kind == "number":
            try:
                number = float(raw)
            except ValueError:
                errors[key] = ["Enter a number."]
                continue
            inputs[name] = int(number) if number.is_integer() else number
        else:
            try:
                inputs[name] = json.loads(raw)
            except ValueError:
                errors[key] = ["Enter valid JSON."]
    return inputs, errors


def initial_values(schema: Mapping[str, Any], *, inputs: Mapping[str, Any] | None = None,
                   asset: Any = None) -> dict[str, Any]:
    """Values to prefill: a past generation's inputs ("use again"), and/or an asset placed in the
    first asset input that accepts its kind (the asset page's quick actions)."""
    values = {k: v for k, v in (inputs or {}).items() if k in schema.get("properties", {})}
    if asset is not None:
        for name, prop in schema.get("properties", {}).items():
            kinds = prop.get("x-asset-kinds") or []
            if prop.get("format") == ASSET_FORMAT and (not kinds or asset.kind in kinds):
                values[name] = str(asset.pk)
                break
    return values


def accepts_asset(schema: Mapping[str, Any], asset: Any) -> bool:
    return any(prop.get("format") == ASSET_FORMAT and (not prop.get("x-asset-kinds")
                                                      or asset.kind in prop["x-asset-kinds"])
               for prop in schema.get("properties", {}).values())
