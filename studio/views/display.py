"""Presentation helpers shared by the studio pages: how models, prices and inputs read on screen."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.urls import reverse

from assets.links import asset_path, preview_version

KIND_ICONS = {"image": "🖼", "video": "🎞", "audio": "🔊", "text": "📄", "mesh": "🧊", "other": "📦"}


def comma_list(raw: str) -> list[str]:
    """"hero, dusk ," → ["hero", "dusk"]: the tag fields' format."""
    return [part for part in (p.strip() for p in raw.split(",")) if part]


def kind_icon(kind: str) -> str:
    return KIND_ICONS.get(kind, KIND_ICONS["other"])


def cover_url(item: Any) -> str | None:
    """A project's or collection's cover: the small WebP thumbnail of its cover image (`cover_id`,
    `cover_thumb` from the list selectors), versioned so the browser caches it; None while there is no
    thumbnail (the card shows an icon). Never the original file: a ×4 upscale is megabytes."""
    if not (getattr(item, "cover_id", None) and getattr(item, "cover_thumb", "")):
        return None
    return asset_path("asset-preview-file", item.cover_id, size="small") + f"?v={preview_version(item.cover_thumb)}"


def usd(amount: Any) -> str:
    """'$0.002', '$1.5', '$0' — as many decimals as the price has, no trailing zeros."""
    if amount is None:
        return "—"
    value = Decimal(amount).normalize()
    return f"${value:f}"


def price_label(model: Any) -> str:
    card = model.current_price
    if card is None:
        return "free"
    if not card.usd_per_unit:
        return "free"
    return f"{usd(card.usd_per_unit)} {card.get_unit_display()}"


def operation_label(operation: str) -> str:
    return operation.replace("-", " ").capitalize()


@dataclass
class ModelGroup:
    label: str
    models: list[Any] = field(default_factory=list)


def annotate_availability(models: Iterable[Any], access: dict[str, Any], speed: dict[str, float] | None = None) -> None:
    """Mark each model with whether this user can run it, whose key pays, why not, and how long it
    typically takes (from recent runs, when there are any)."""
    for model in models:
        entry = access[model.provider]
        model.available, model.key_source, model.unavailable_reason = entry.available, entry.key_source, entry.reason
        seconds = (speed or {}).get(model.id)
        model.speed_label = "" if seconds is None else (f"~{seconds:.0f} s" if seconds >= 1 else "<1 s")


def model_groups(models: Iterable[Any]) -> list[ModelGroup]:
    """The picker's <optgroup>s: models grouped by operation, in catalog order (featured first)."""
    groups: dict[str, ModelGroup] = {}
    for model in models:
        model.price_label = price_label(model)
        groups.setdefault(model.operation, ModelGroup(label=operation_label(model.operation))).models.append(model)
    return list(groups.values())


def default_model(models: list[Any]) -> Any:
    """A featured model the user can run, else any they can run, else the first."""
    runnable = [m for m in models if getattr(m, "available", True)]
    return next((m for m in runnable if m.featured), runnable[0] if runnable else (models[0] if models else None))


@dataclass
class InputRow:
    label: str
    value: str
    href: str = ""


def input_rows(schema: Mapping[str, Any], inputs: Mapping[str, Any]) -> list[InputRow]:
    """A generation's inputs as label/value rows; asset inputs link to the asset's page."""
    props = schema.get("properties", {})
    rows: list[InputRow] = []
    for name, value in inputs.items():
        prop = props.get(name, {})
        label = str(prop.get("title") or name.replace("_", " ").capitalize())
        href = ""
        if prop.get("format") == "asset" and value:
            try:
                href = reverse("studio:asset", kwargs={"asset_id": uuid.UUID(str(value))})
            except ValueError:
                href = ""
        rows.append(InputRow(label=label, value="" if value is None else str(value), href=href))
    return rows


def field_error_lines(errors: Mapping[str, list[str]], schema: Mapping[str, Any]) -> list[str]:
    """Service errors keyed "inputs.width" as 'Width: must be at least 256.' lines."""
    props = schema.get("properties", {})
    lines = []
    for key, messages in errors.items():
        name = key.split(".", 1)[1] if key.startswith("inputs.") else key
        prop = props.get(name, {})
        label = str(prop.get("title") or name.replace("_", " ").capitalize())
        lines.extend(f"{label}: {message}" for message in messages)
    return lines
