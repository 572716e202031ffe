"""From a price card and a job's inputs to USD and credits.

A card prices one unit (an image, a megapixel, a second, ...). `quantity` says how many units a job
uses, as a product of factors read from the inputs:

    {"fields": ["num_images"]}                       -> inputs["num_images"]
    {"fields": ["width", "height"], "divide": 1e6}   -> megapixels of the requested size
    {"asset_pixels": "image", "squared": "scale", "divide": 1e6}
                                                     -> output megapixels of an upscale
    {"chars_of": "text", "divide": 1000}             -> thousands of characters of a TTS script

Missing factors count as 1. Credits are rounded up, so a paid job never costs zero credits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.conf import settings

from billing.wording import credits_display


@dataclass(frozen=True)
class Estimate:
    units: Decimal
    cost_usd: Decimal
    credits: int


def usd_to_credits(cost_usd: Decimal, credits_per_usd: int | None = None) -> int:
    """`credits_per_usd` is the user's plan rate (billing.limits.credits_per_usd_for); without one,
    the platform default."""
    rate = settings.CREDITS_PER_USD if credits_per_usd is None else credits_per_usd
    credits = (cost_usd * rate).to_integral_value(rounding=ROUND_CEILING)
    return max(0, int(credits))


def quantity(spec: Mapping[str, Any], inputs: Mapping[str, Any], assets: Mapping[str, Any]) -> Decimal:
    units = Decimal(1)
    for field in spec.get("fields", []):
        value = inputs.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            units *= Decimal(str(value))
    if spec.get("chars_of"):
        units *= Decimal(len(str(inputs.get(spec["chars_of"], ""))))
    if spec.get("asset_pixels"):
        asset = assets.get(spec["asset_pixels"])
        if asset is not None and asset.width and asset.height:
            units *= Decimal(asset.width * asset.height)
    if spec.get("squared"):
        factor = inputs.get(spec["squared"])
        if isinstance(factor, (int, float)) and not isinstance(factor, bool):
            units *= Decimal(str(factor)) ** 2
    if spec.get("divide"):
        units /= Decimal(str(spec["divide"]))
    return units


def estimate(card: Any, inputs: Mapping[str, Any], assets: Mapping[str, Any] | None = None, *,
             credits_per_usd: int | None = None) -> Estimate:
    if card is None:
        return Estimate(units=Decimal(0), cost_usd=Decimal(0), credits=0)
    units = quantity(card.quantity or {}, inputs, assets or {})
    cost = (units * card.usd_per_unit).quantize(Decimal("0.000001"), rounding=ROUND_CEILING)
    return Estimate(units=units, cost_usd=cost, credits=usd_to_credits(cost, credits_per_usd))


def actual(card: Any, estimated: Estimate, *, usage: Mapping[str, Any], provider_cost_usd: Decimal | None,
           requested_outputs: int, delivered_outputs: int,
           credits_per_usd: int | None = None) -> tuple[Decimal, int]:
    """What a finished job costs: the provider's reported cost when it gives one, else the card
    applied to what was delivered (3 of 4 images is charged as 3)."""
    if provider_cost_usd is not None:
        cost = Decimal(provider_cost_usd)
    elif card is not None and "units" in usage:
        cost = Decimal(str(usage["units"])) * card.usd_per_unit
    else:
        cost = estimated.cost_usd
        if requested_outputs > 0 and delivered_outputs < requested_outputs:
            cost = cost * Decimal(delivered_outputs) / Decimal(requested_outputs)
    cost = cost.quantize(Decimal("0.000001"), rounding=ROUND_CEILING)
    return cost, usd_to_credits(cost, credits_per_usd)


def byo_fee(credits: int) -> int:
    """On the user's own key the provider bills the user; we charge only the platform fee, if any."""
    return usd_fee_round(credits * settings.BYO_KEY_FEE_PERCENT)


def usd_fee_round(hundredths: int) -> int:
    return -(-hundredths // 100)  # ceiling division: a fee on a paid job is at least one credit


__all__ = ["Estimate", "estimate", "actual", "usd_to_credits", "credits_display"]
