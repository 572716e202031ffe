"""Lineage: where an asset came from and what was made from it, with what each step cost.

An asset's *parents* are its `parent` (set at ingest to the job's first input asset) and every asset
its generation took as an input (the inputs whose schema property has `"format": "asset"`, e.g. an
inpaint's image and mask). Its *children* are the assets whose parent it is, or whose generation took
it as an input. Followed both ways this gives chains like image → video → voice-over, variations
(several children of one image) and edits of edits.

The walk is breadth-first, one level per query (two downwards), among the user's own assets only, and
bounded: at most MAX_DEPTH levels each way and MAX_NODES assets in all; past either bound the answer
says `truncated`. Cycles cannot arise (a job's inputs exist before its outputs), but an asset already
placed is never expanded again, so even bad data cannot loop; an asset reached twice (two inputs of one
job made from the same source) is shown again as a leaf marked `repeat`.

Cost: a step made by a job costs that job's `credits_charged` and `provider_cost_usd`; an upload costs
0. A job with several outputs is one step however many of its outputs appear: totals count each job
once. `to_make` is this asset with everything upstream of it; `chain` adds everything made from it.

It reads assets and the jobs that made them, so it sits above both apps (docs/ARCHITECTURE.md, "Layers").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from assets.library.selectors import asset_get_for_user, asset_list_for_user
from assets.models import Asset
from generations.inputs import asset_fields
from generations.models import AIModel
from generations.selectors import generation_list_for_user

if TYPE_CHECKING:
    from accounts.models import User

MAX_DEPTH = 10
MAX_NODES = 200


@dataclass
class Cost:
    credits: int = 0
    provider_cost_usd: Decimal = Decimal("0")

    def as_dict(self) -> dict[str, Any]:
        return {"credits": self.credits, "provider_cost_usd": str(self.provider_cost_usd)}


@dataclass
class LineageNode:
    asset: Asset
    repeat: bool = False  # placed elsewhere in the tree already; not expanded again
    via: list[str] = field(default_factory=list)  # how it links to the node above: "parent", or input names
    links: list[LineageNode] = field(default_factory=list)  # parents (upwards) or children (downwards)

    @property
    def cost(self) -> Cost:
        generation = self.asset.generation
        if generation is None:
            return Cost()
        return Cost(credits=generation.credits_charged,
                    provider_cost_usd=generation.provider_cost_usd or Decimal("0"))

    def as_dict(self, key: str) -> dict[str, Any]:
        generation = self.asset.generation
        return {
            "id": str(self.asset.pk),
            "name": self.asset.name,
            "kind": self.asset.kind,
            "source": self.asset.source,
            "created_at": self.asset.created_at.isoformat(),
            "trashed": self.asset.deleted_at is not None,
            "repeat": self.repeat,
            "via": self.via,
            "step": {
                "generation": str(generation.pk) if generation else None,
                "model": generation.model_id if generation else None,
                "operation": generation.model.operation if generation else "upload",
                **self.cost.as_dict(),
            },
            key: [link.as_dict(key) for link in self.links],
        }


@dataclass
class Lineage:
    root: LineageNode  # the asset itself; root.links are unused (see parents/children)
    parents: list[LineageNode]
    children: list[LineageNode]
    to_make: Cost
    chain: Cost
    truncated: bool
    steps: int  # distinct jobs in the whole chain

    def as_dict(self) -> dict[str, Any]:
        return {
            "asset": {**self.root.as_dict("parents"), "parents": [n.as_dict("parents") for n in self.parents],
                      "children": [n.as_dict("children") for n in self.children]},
            "cost": {"to_make": self.to_make.as_dict(), "chain": self.chain.as_dict()},
            "steps": self.steps,
            "truncated": self.truncated,
        }


def _input_ids(asset: Asset, fields: dict[str, list[str]]) -> dict[str, str]:
    """The asset-valued inputs of the job that made `asset`: {input name: asset id}. `fields` caches each
    model's asset-valued input names for the walk (parsing a schema is not free, and a level can hold
    hundreds of outputs of one model)."""
    generation = asset.generation
    if generation is None:
        return {}
    inputs = generation.inputs or {}
    names = fields.get(generation.model_id)
    if names is None:
        names = fields[generation.model_id] = asset_fields(generation.model.input_schema)
    return {name: str(inputs[name]) for name in names if inputs.get(name)}


def _links_up(asset: Asset, fields: dict[str, list[str]]) -> dict[str, list[str]]:
    """{parent id: how it is linked} for one asset."""
    links: dict[str, list[str]] = {}
    if asset.parent_id and asset.parent_id != asset.pk:
        links.setdefault(str(asset.parent_id), []).append("parent")
    for name, asset_id in _input_ids(asset, fields).items():
        if asset_id != str(asset.pk):
            links.setdefault(asset_id, []).append(name)
    return links


def _fetch(qs: Any) -> Any:
    return qs.select_related("generation__model").order_by("created_at", "id")


class _Walk:
    def __init__(self, user: User, root: Asset) -> None:
        self.user = user
        self.placed: set[Any] = {root.pk}
        self.count = 1
        self.truncated = False
        self.assets = asset_list_for_user(user, include_trashed=True)
        self.fields: dict[str, list[str]] = {}

    def _room(self) -> bool:
        if self.count >= MAX_NODES:
            self.truncated = True
            return False
        return True

    def _attach(self, node: LineageNode, found: Asset, via: list[str], nxt: list[LineageNode]) -> None:
        if found.pk in self.placed:
            node.links.append(LineageNode(asset=found, repeat=True, via=via))
            return
        if not self._room():
            return
        child = LineageNode(asset=found, via=via)
        node.links.append(child)
        self.placed.add(found.pk)
        self.count += 1
        nxt.append(child)

    def up(self, root: LineageNode) -> None:
        level = [root]
        for depth in range(MAX_DEPTH + 1):
            wanted = {node.asset.pk: _links_up(node.asset, self.fields) for node in level}
            ids = {pid for links in wanted.values() for pid in links}
            if not ids:
                return
            if depth == MAX_DEPTH:
                self.truncated = True
                return
            found = {str(a.pk): a for a in _fetch(self.assets.filter(pk__in=ids))}
            nxt: list[LineageNode] = []
            for node in level:
                for pid, via in wanted[node.asset.pk].items():
                    if pid in found:
                        self._attach(node, found[pid], via, nxt)
            level = nxt

    def down(self, root: LineageNode) -> None:
        keys = _asset_input_names()
        level = [root]
        for depth in range(MAX_DEPTH + 1):
            ids = [node.asset.pk for node in level]
            if not ids:
                return
            as_text = [str(i) for i in ids]
            by_input = Q()
            for key in keys:
                # A JSON key lookup; it cannot use an index, but the generations scanned are only those
                # in the user's own projects (gen_project_recent), and only once per level.
                by_input |= Q(**{f"inputs__{key}__in": as_text})
            made_from = generation_list_for_user(self.user).filter(by_input).values("pk") if keys else None
            condition = Q(parent_id__in=ids) | (Q(generation_id__in=made_from) if made_from is not None else Q())
            # No more rows than could still be placed, plus the ones already placed (shown as repeats):
            # an image with 5,000 variations loads what the tree can show, and says it is truncated.
            limit = MAX_NODES - self.count + len(self.placed) + 1
            children = list(_fetch(self.assets.filter(condition).exclude(pk__in=ids))[:limit]) if limit > 0 else []
            if not children:
                return
            if depth == MAX_DEPTH or len(children) == limit:
                self.truncated = True
                if depth == MAX_DEPTH:
                    return
            # Each child's links worked out once, then looked up by parent: not once per (node, child) pair.
            by_parent: dict[str, list[tuple[Asset, list[str]]]] = {}
            for child in children:
                for parent_id, via in _links_up(child, self.fields).items():
                    by_parent.setdefault(parent_id, []).append((child, via))
            nxt: list[LineageNode] = []
            for node in level:
                for child, via in by_parent.get(str(node.asset.pk), []):
                    self._attach(node, child, via, nxt)
            level = nxt


def _asset_input_names() -> list[str]:
    """Every input name that takes an asset in any catalog model (a handful)."""
    names: set[str] = set()
    for schema in AIModel.objects.values_list("input_schema", flat=True):
        names.update(asset_fields(schema or {}))
    return sorted(names)


def _walk_nodes(nodes: Iterable[LineageNode]) -> Iterable[LineageNode]:
    for node in nodes:
        yield node
        yield from _walk_nodes(node.links)


def _total(nodes: Iterable[LineageNode]) -> Cost:
    seen: set[Any] = set()
    total = Cost()
    for node in nodes:
        generation = node.asset.generation
        if generation is None or generation.pk in seen:
            continue
        seen.add(generation.pk)
        cost = node.cost
        total.credits += cost.credits
        total.provider_cost_usd += cost.provider_cost_usd
    return total


def asset_lineage(*, user: User, asset_id: Any) -> Lineage:
    """The asset's lineage as two trees (parents upwards, children downwards) with costs. 404 if the
    user may not see the asset; only the user's own assets appear in it."""
    asset = asset_get_for_user(user, asset_id)
    # The funnel selects the generation and its model; the tree needs nothing more for the root.
    root = LineageNode(asset=asset)
    walk = _Walk(user, asset)
    upward = LineageNode(asset=asset)
    walk.up(upward)
    downward = LineageNode(asset=asset)
    walk.down(downward)
    ancestors = [root, *_walk_nodes(upward.links)]
    everything = [*ancestors, *_walk_nodes(downward.links)]
    return Lineage(root=root, parents=upward.links, children=downward.links, to_make=_total(ancestors),
                   chain=_total(everything), truncated=walk.truncated,
                   steps=len({n.asset.generation_id for n in everything if n.asset.generation_id}))
