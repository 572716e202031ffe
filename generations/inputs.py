"""Validating a job's inputs against its model's JSON Schema, before any credits move."""

from __future__ import annotations

import copy
import random
import uuid
from typing import Any

from jsonschema import Draft202012Validator

from assets.library.selectors import asset_list_for_user
from assets.models import Asset
from core.errors import InvalidRequest
from core.parsers import MAX_INPUTS_DEPTH, json_depth_refuse

ASSET_FORMAT = "asset"


def _apply_defaults(schema: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    filled = copy.deepcopy(inputs)
    for name, prop in schema.get("properties", {}).items():
        if name not in filled and "default" in prop:
            filled[name] = copy.deepcopy(prop["default"])
    return filled


def asset_fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: prop for name, prop in schema.get("properties", {}).items() if prop.get("format") == ASSET_FORMAT}


def validate_inputs(*, schema: dict[str, Any], inputs: Any, user: Any,
                    draw_seed: bool = True) -> tuple[dict[str, Any], dict[str, Asset]]:
    """Return the inputs with defaults filled in (and a seed chosen when the model takes one and none
    was given, so "use again" reproduces the result), plus the assets they refer to. Raises
    InvalidRequest naming every bad field.

    `draw_seed=False` (an estimate) leaves a missing seed out of the result: a seed drawn for an
    estimate would be shown to the caller and then not used, since the submit draws its own. The
    inputs are still validated as the submit validates them, with a seed in place."""
    if not isinstance(inputs, dict):
        raise InvalidRequest("inputs must be a JSON object.", fields={"inputs": ["Expected an object."]})
    json_depth_refuse(inputs, field="inputs", limit=MAX_INPUTS_DEPTH)  # before deepcopy recurses on it
    filled = _apply_defaults(schema, inputs)
    props = schema.get("properties", {})
    seed_drawn = "seed" in props and filled.get("seed") is None
    if seed_drawn:
        minimum = int(props["seed"].get("minimum", 0))
        maximum = int(props["seed"].get("maximum", 2**31 - 1))
        filled["seed"] = random.SystemRandom().randint(minimum, maximum) if draw_seed else minimum
    errors: dict[str, list[str]] = {}
    for error in sorted(Draft202012Validator(schema).iter_errors(filled), key=lambda e: list(e.path)):
        field = ".".join(str(p) for p in error.path) or _field_from_error(error)
        errors.setdefault(f"inputs.{field}" if field else "inputs", []).append(_message(error))
    assets: dict[str, Asset] = {}
    for name, prop in asset_fields(schema).items():
        value = filled.get(name)
        if value in (None, "") or f"inputs.{name}" in errors:
            continue
        asset = asset_list_for_user(user).filter(pk=_uuid_or_none(value)).first()
        if asset is None:
            errors.setdefault(f"inputs.{name}", []).append("No such asset in your projects.")
            continue
        kinds = prop.get("x-asset-kinds")
        if kinds and asset.kind not in kinds:
            errors.setdefault(f"inputs.{name}", []).append(
                f"This input takes {' or '.join(kinds)}; the asset is {asset.kind}.")
            continue
        assets[name] = asset
        filled[name] = str(asset.pk)
    if errors:
        first_field, first = next(iter(errors.items()))
        raise InvalidRequest(f"{first_field}: {first[0]}", fields=errors)
    if seed_drawn and not draw_seed:
        del filled["seed"]
    return filled, assets


def _field_from_error(error: Any) -> str:
    if error.validator == "required":
        return str(error.message).split("'")[1] if "'" in error.message else ""
    if error.validator == "additionalProperties":
        return ""
    return ""


def _message(error: Any) -> str:
    if error.validator == "required":
        return "This field is required."
    if error.validator == "additionalProperties":
        return f"Unknown input: {error.message.split('(')[-1].rstrip(')')}"
    if error.validator == "pattern":
        # jsonschema's text quotes the regular expression, which means nothing to a person.
        return "This field must not be blank." if error.validator_value == "\\S" else "This value is not in the expected format."
    if error.validator == "minLength" and error.validator_value == 1:
        return "This field must not be blank."
    if error.validator == "maxLength":
        return f"At most {error.validator_value} characters."  # jsonschema's text quotes the whole value
    return str(error.message)


def _uuid_or_none(value: Any) -> Any:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
