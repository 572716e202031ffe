"""The model catalog as data files beside this module (see README.md here), and its loader."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import transaction
from jsonschema import Draft202012Validator

from generations.models import AIModel, Operation, PriceCard, PriceUnit

CATALOG_DIR = Path(__file__).resolve().parent
REQUIRED_KEYS = {"id", "provider_model", "name", "operation", "output_kind", "input_schema", "price"}


class CatalogError(ValueError):
    pass


@dataclass
class LoadResult:
    created: int = 0
    updated: int = 0
    new_prices: int = 0
    deactivated: int = 0


def _check_entry(entry: dict[str, Any], source: Path) -> None:
    missing = REQUIRED_KEYS - entry.keys()
    if missing:
        raise CatalogError(f"{source.name}: {entry.get('id', '?')} lacks {', '.join(sorted(missing))}")
    if entry["operation"] not in Operation.values:
        raise CatalogError(f"{source.name}: {entry['id']} has unknown operation {entry['operation']!r}")
    if entry["price"]["unit"] not in PriceUnit.values:
        raise CatalogError(f"{source.name}: {entry['id']} has unknown price unit {entry['price']['unit']!r}")
    Draft202012Validator.check_schema(entry["input_schema"])


def _price_terms(card: PriceCard | None) -> tuple[Any, ...] | None:
    if card is None:
        return None
    return (card.unit, Decimal(card.usd_per_unit).normalize(), card.quantity or {}, card.effective_from, card.source)


@transaction.atomic
def catalog_load(paths: list[Path] | None = None, *, deactivate_missing: bool = True) -> LoadResult:
    """Upsert every model in the catalog files. A price card gets a new version only when its terms
    change, so past generations keep the card they were charged by. Models of a loaded provider that
    are no longer in its file are deactivated, not deleted (generations refer to them)."""
    result = LoadResult()
    files = paths or sorted(CATALOG_DIR.glob("*.json"))
    for path in files:
        data = json.loads(path.read_text())
        provider = data["provider"]
        seen: set[str] = set()
        for entry in data["models"]:
            _check_entry(entry, path)
            seen.add(entry["id"])
            defaults = {
                "provider": provider,
                "provider_model": entry["provider_model"],
                "name": entry["name"],
                "description": entry.get("description", ""),
                "operation": entry["operation"],
                "output_kind": entry["output_kind"],
                "input_schema": entry["input_schema"],
                "config": entry.get("config", {}),
                "timeout_seconds": int(entry.get("timeout_seconds", 600)),
                "catalog_version": str(data.get("catalog_version", "")),
            }
            model, created = AIModel.objects.get_or_create(id=entry["id"], defaults={**defaults,
                                                           "featured": bool(entry.get("featured", False))})
            if created:
                result.created += 1
            else:
                # `active` and `featured` are the admins' to change; the file only sets them at creation.
                for key, value in defaults.items():
                    setattr(model, key, value)
                model.save()
                result.updated += 1
            price = entry["price"]
            current = model.price_cards.order_by("-version").first()
            terms = (price["unit"], Decimal(str(price["usd_per_unit"])).normalize(), price.get("quantity", {}),
                     date.fromisoformat(price["effective_from"]), price["source"])
            if _price_terms(current) != terms:
                PriceCard.objects.create(
                    model=model, version=(current.version + 1) if current else 1, unit=price["unit"],
                    usd_per_unit=Decimal(str(price["usd_per_unit"])), quantity=price.get("quantity", {}),
                    effective_from=terms[3], source=price["source"],
                )
                result.new_prices += 1
        if deactivate_missing:
            result.deactivated += (AIModel.objects.filter(provider=provider, active=True)
                                   .exclude(id__in=seen).update(active=False))
    return result
