"""Collections over the API, and an asset's lineage and duplicates.

/api/v1/collections[/{id}[/items[/{asset}]|/reorder]], /api/v1/assets/{id}/lineage and
/api/v1/assets/{id}/duplicates. Every object is reached through its access funnel: another user's
collection or asset is a 404."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assets.api.assets import AssetSerializer
from assets.library.collections import (
    MAX_ITEMS,
    UNSET,
    collection_assets,
    collection_create,
    collection_delete,
    collection_get_for_user,
    collection_item_move,
    collection_items_add,
    collection_items_remove,
    collection_list_with_stats_for_user,
    collection_reorder,
    collection_update,
)
from assets.library.duplicates import NEAR_THRESHOLD, asset_duplicates
from assets.library.selectors import asset_tag_names_attach
from assets.models import Collection
from core.pagination import CursorPagination
from orchestration.lineage import asset_lineage

# --- collections -------------------------------------------------------------------------------------------


class CollectionSerializer(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project_id", allow_null=True)
    item_count = serializers.IntegerField(help_text="Assets shown (the trash is not counted).")
    cover = serializers.UUIDField(source="cover_id", allow_null=True, help_text="The first image, if any.")

    class Meta:
        model = Collection
        fields = ["id", "name", "description", "project", "item_count", "cover", "created_at", "updated_at"]
        read_only_fields = fields


class CollectionItemSerializer(AssetSerializer):
    position = serializers.IntegerField(help_text="Index among the shown items, from 0.")
    added_at = serializers.DateTimeField()

    class Meta(AssetSerializer.Meta):
        fields = ["position", "added_at", *AssetSerializer.Meta.fields]
        read_only_fields = fields


class CollectionDetailSerializer(CollectionSerializer):
    items = CollectionItemSerializer(source="shown", many=True, read_only=True,
                                     help_text=f"In order; assets in the trash are left out. At most {MAX_ITEMS}.")

    class Meta(CollectionSerializer.Meta):
        fields = [*CollectionSerializer.Meta.fields, "items"]
        read_only_fields = fields


class CollectionWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    project = serializers.UUIDField(required=False, allow_null=True,
                                    help_text="Tie the collection to one of your projects (null: none).")


class ItemsAddSerializer(serializers.Serializer):
    assets = serializers.ListField(child=serializers.UUIDField(), allow_empty=False, max_length=MAX_ITEMS)
    position = serializers.IntegerField(required=False, min_value=0,
                                        help_text="Insert from this index (default: at the end).")


class ItemsRemoveSerializer(serializers.Serializer):
    assets = serializers.ListField(child=serializers.UUIDField(), allow_empty=False, max_length=MAX_ITEMS)


class ReorderSerializer(serializers.Serializer):
    assets = serializers.ListField(child=serializers.UUIDField(), required=False, allow_empty=False,
                                   max_length=MAX_ITEMS,
                                   help_text="The new order: every shown item exactly once (else 409).")
    asset = serializers.UUIDField(required=False, help_text="Or move this one item...")
    position = serializers.IntegerField(required=False, min_value=0, help_text="...to this index (0 = first).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        whole = "assets" in attrs
        one = "asset" in attrs or "position" in attrs
        if whole == one or (one and not ("asset" in attrs and "position" in attrs)):
            raise serializers.ValidationError("Send either `assets` (the full order) or `asset` and `position`.")
        return attrs


def _detail(request: Request, collection_id: Any) -> dict[str, Any]:
    """The collection as it is now (read again through the funnel after a write), with its items."""
    collection = collection_get_for_user(request.user, collection_id)
    collection.shown = collection_assets(collection)
    collection.item_count = len(collection.shown)
    collection.cover_id = next((a.pk for a in collection.shown if a.kind == "image"), None)
    return CollectionDetailSerializer(collection, context={"request": request}).data


@extend_schema(tags=["collections"])
class CollectionViewSet(viewsets.ViewSet):
    """Your collections: ordered sets of your assets, optionally tied to a project."""

    lookup_value_converter = "uuid"
    pagination_class = CursorPagination  # the schema documents the page object from it

    @extend_schema(responses=CollectionSerializer(many=True), summary="Your collections, most recently changed first")
    def list(self, request: Request) -> Response:
        paginator = CursorPagination()
        paginator.ordering = ("-updated_at", "-id")
        page = paginator.paginate_queryset(collection_list_with_stats_for_user(request.user), request, view=self)
        return paginator.get_paginated_response(CollectionSerializer(page, many=True).data)

    @extend_schema(request=CollectionWriteSerializer, responses={201: CollectionDetailSerializer},
                   summary="Create a collection")
    def create(self, request: Request) -> Response:
        data = CollectionWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        collection = collection_create(user=request.user, name=data.validated_data["name"],
                                       description=data.validated_data.get("description", ""),
                                       project_id=data.validated_data.get("project"))
        return Response(_detail(request, collection.pk), status=status.HTTP_201_CREATED)

    @extend_schema(responses=CollectionDetailSerializer, summary="A collection with its items in order")
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(_detail(request, pk))

    @extend_schema(request=CollectionWriteSerializer(partial=True), responses=CollectionDetailSerializer,
                   summary="Rename a collection, change its description or project")
    def partial_update(self, request: Request, pk: str) -> Response:
        data = CollectionWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        collection = collection_update(user=request.user, collection_id=pk, name=given.get("name", UNSET),
                                       description=given.get("description", UNSET),
                                       project_id=given.get("project", UNSET))
        return Response(_detail(request, collection.pk))

    @extend_schema(responses={204: None}, summary="Delete a collection (its assets stay)")
    def destroy(self, request: Request, pk: str) -> Response:
        collection_delete(user=request.user, collection_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["POST"], request=ItemsAddSerializer, responses=CollectionDetailSerializer,
                   operation_id="api_v1_collections_items_add", summary="Add assets (already there: left in place)")
    @extend_schema(methods=["DELETE"], request=ItemsRemoveSerializer, responses=CollectionDetailSerializer,
                   operation_id="api_v1_collections_items_remove",
                   summary="Remove assets from the collection (the assets stay)")
    @action(detail=True, methods=["post", "delete"])
    def items(self, request: Request, pk: str) -> Response:
        if request.method == "POST":
            data = ItemsAddSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            collection_items_add(user=request.user, collection_id=pk, asset_ids=data.validated_data["assets"],
                                 position=data.validated_data.get("position"))
        else:
            data = ItemsRemoveSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            collection_items_remove(user=request.user, collection_id=pk, asset_ids=data.validated_data["assets"])
        return Response(_detail(request, pk))

    @extend_schema(request=None, responses=CollectionDetailSerializer, operation_id="api_v1_collections_item_remove",
                   summary="Remove one asset from the collection")
    @action(detail=True, methods=["delete"], url_path="items/<uuid:asset_id>", url_name="item")
    def item(self, request: Request, pk: str, asset_id: Any) -> Response:
        collection_items_remove(user=request.user, collection_id=pk, asset_ids=[asset_id])
        return Response(_detail(request, pk))

    @extend_schema(request=ReorderSerializer, responses=CollectionDetailSerializer,
                   summary="Reorder: the full order, or one item to a position")
    @action(detail=True, methods=["post"])
    def reorder(self, request: Request, pk: str) -> Response:
        data = ReorderSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        if "assets" in given:
            collection_reorder(user=request.user, collection_id=pk, asset_ids=given["assets"])
        else:
            collection_item_move(user=request.user, collection_id=pk, asset_id=given["asset"],
                                 position=given["position"])
        return Response(_detail(request, pk))


# --- lineage -------------------------------------------------------------------------------------------------


class CostSerializer(serializers.Serializer):
    credits = serializers.IntegerField(read_only=True)
    provider_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6, read_only=True,
                                                 coerce_to_string=True)


class LineageStepSerializer(serializers.Serializer):
    generation = serializers.UUIDField(read_only=True, allow_null=True, help_text="The job; null for an upload.")
    model = serializers.CharField(read_only=True, allow_null=True)
    operation = serializers.CharField(read_only=True, help_text="The model's operation, or `upload`.")
    credits = serializers.IntegerField(read_only=True, help_text="What the job charged (an upload: 0).")
    provider_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6, read_only=True,
                                                 coerce_to_string=True)


class _LineageNodeFields(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    name = serializers.CharField(read_only=True)
    kind = serializers.CharField(read_only=True)
    source = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    trashed = serializers.BooleanField(read_only=True)
    repeat = serializers.BooleanField(read_only=True, help_text="Shown elsewhere in the tree; not expanded again.")
    via = serializers.ListField(child=serializers.CharField(), read_only=True,
                                help_text="How it links to the node above: `parent` and/or input names.")
    step = LineageStepSerializer(read_only=True)


class LineageParentSerializer(_LineageNodeFields):
    pass


class LineageChildSerializer(_LineageNodeFields):
    pass


# Recursive: each parent has its own parents, each child its own children.
LineageParentSerializer._declared_fields["parents"] = LineageParentSerializer(many=True, read_only=True)
LineageChildSerializer._declared_fields["children"] = LineageChildSerializer(many=True, read_only=True)


class LineageRootSerializer(_LineageNodeFields):
    parents = LineageParentSerializer(many=True, read_only=True)
    children = LineageChildSerializer(many=True, read_only=True)


class LineageCostSerializer(serializers.Serializer):
    to_make = CostSerializer(read_only=True, help_text="This asset and everything upstream of it.")
    chain = CostSerializer(read_only=True, help_text="The whole lineage, up and down; each job counted once.")


class LineageSerializer(serializers.Serializer):
    asset = LineageRootSerializer(read_only=True)
    cost = LineageCostSerializer(read_only=True)
    steps = serializers.IntegerField(read_only=True, help_text="Distinct jobs in the lineage.")
    truncated = serializers.BooleanField(read_only=True, help_text="The walk stopped at its depth or size bound.")


@extend_schema(tags=["assets"])
class AssetLineageView(APIView):
    @extend_schema(responses=LineageSerializer, summary="An asset's parents and children as trees, with costs")
    def get(self, request: Request, pk: Any) -> Response:
        return Response(LineageSerializer(asset_lineage(user=request.user, asset_id=pk).as_dict()).data)


# --- duplicates ----------------------------------------------------------------------------------------------


class NearDuplicateSerializer(AssetSerializer):
    distance = serializers.IntegerField(help_text="Differing bits of the 64-bit perceptual hash.")

    class Meta(AssetSerializer.Meta):
        fields = [*AssetSerializer.Meta.fields, "distance"]
        read_only_fields = fields


class DuplicatesSerializer(serializers.Serializer):
    exact = AssetSerializer(many=True, read_only=True, help_text="The same bytes (SHA-256).")
    near = NearDuplicateSerializer(many=True, read_only=True, help_text="Perceptually alike, closest first.")
    threshold = serializers.IntegerField(read_only=True, help_text="Most differing bits counted as near.")
    near_truncated = serializers.BooleanField(read_only=True,
                                              help_text="Only the newest assets were compared (see the docs).")


@extend_schema(tags=["assets"])
class AssetDuplicatesView(APIView):
    @extend_schema(responses=DuplicatesSerializer,
                   summary="Your other assets with the same content or a near-identical picture")
    def get(self, request: Request, pk: Any) -> Response:
        found = asset_duplicates(user=request.user, asset_id=pk)
        for asset, distance in found.near:
            asset.distance = distance
        asset_tag_names_attach([*found.exact, *(a for a, _ in found.near)])  # the serializer's tags, one query
        data = {"exact": found.exact, "near": [a for a, _ in found.near], "threshold": NEAR_THRESHOLD,
                "near_truncated": found.near_truncated}
        return Response(DuplicatesSerializer(data, context={"request": request}).data)
