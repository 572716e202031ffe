from __future__ import annotations

from typing import Any

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from billing.services import credits_summary
from core.pagination import CursorPagination, results_serializer
from generations.credentials import availability_for
from generations.models import AIModel, Generation, Operation, Status
from generations.selectors import generation_get_for_user, generation_page_for_user, model_get, model_list
from generations.services import generation_cancel, generation_create, generation_estimate
from projects.filters import ProjectScopedFilterSet, filter_or_400


class PriceSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    unit = serializers.CharField()
    usd_per_unit = serializers.DecimalField(max_digits=12, decimal_places=6)
    effective_from = serializers.DateField()
    source = serializers.CharField()


class AvailabilitySerializer(serializers.Serializer):
    available = serializers.BooleanField()
    key_source = serializers.ChoiceField(choices=["user", "platform", "none"],
                                         help_text="Whose key would pay the provider: yours, the platform's, or none needed.")
    reason = serializers.CharField(help_text="Why the model is unavailable to you, when it is.")


class ModelSerializer(serializers.ModelSerializer):
    price = serializers.SerializerMethodField()
    availability = serializers.SerializerMethodField()

    class Meta:
        model = AIModel
        fields = ["id", "name", "description", "provider", "operation", "output_kind", "input_schema",
                  "featured", "timeout_seconds", "price", "availability"]
        read_only_fields = fields

    @extend_schema_field(PriceSerializer(allow_null=True))
    def get_price(self, obj: AIModel) -> dict[str, Any] | None:
        card = obj.current_price
        return PriceSerializer(card).data if card else None

    @extend_schema_field(AvailabilitySerializer)
    def get_availability(self, obj: AIModel) -> dict[str, Any]:
        access = self.context["availability"][obj.provider]
        return {"available": access.available, "key_source": access.key_source, "reason": access.reason}


class ModelViewSet(viewsets.ViewSet):
    """The catalog of models across providers."""

    lookup_value_converter = "path"  # model ids contain slashes: "local/sketch", "fal-ai/flux/schnell"

    @extend_schema(parameters=[OpenApiParameter("operation", str, enum=Operation.values)],
                   responses=results_serializer("ModelList", ModelSerializer))
    def list(self, request: Request) -> Response:
        operation = request.query_params.get("operation")
        if operation and operation not in Operation.values:
            return Response({"error": {"code": "invalid", "message": f"Unknown operation {operation!r}.",
                                       "fields": {"operation": [f"One of: {', '.join(Operation.values)}"]}}},
                            status=status.HTTP_400_BAD_REQUEST)
        models = list(model_list(operation=operation))
        access = availability_for(request.user, {m.provider for m in models})
        return Response({"results": ModelSerializer(models, many=True, context={"availability": access}).data})

    @extend_schema(responses=ModelSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        model = model_get(pk)
        access = availability_for(request.user, {model.provider})
        return Response(ModelSerializer(model, context={"availability": access}).data)


class GenerationCreateSerializer(serializers.Serializer):
    project = serializers.UUIDField()
    model = serializers.CharField(max_length=120)
    inputs = serializers.JSONField(default=dict)
    fallback_models = serializers.ListField(
        child=serializers.CharField(max_length=120), required=False, allow_null=True, default=None,
        help_text="Models of the same operation to switch to, in order, if this one fails transiently "
                  "(only those you can pay for). Default: the project's fallback list.")
    max_credits = serializers.IntegerField(
        min_value=0, required=False, allow_null=True, default=None,
        help_text="The most this job may cost, at or above the estimate. Held in full and the unused part "
                  "freed when it finishes. Without it the charge never exceeds the estimate.")


class EstimateSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=120)
    inputs = serializers.JSONField(default=dict)


class EstimateResultSerializer(serializers.Serializer):
    model = serializers.CharField()
    inputs = serializers.JSONField(help_text="The inputs as the submit will run them, defaults filled in. A seed "
                                             "left out stays out: the submit draws it and the job records it.")
    credits = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=12, decimal_places=6)
    available = serializers.IntegerField()


class GenerationCreditsSerializer(serializers.Serializer):
    estimated = serializers.IntegerField()
    held = serializers.IntegerField(help_text="Credits on hold for this job now: 0 once it has finished "
                                              "(the hold is settled or released).")
    charged = serializers.IntegerField()


class GenerationSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model_id")
    project = serializers.UUIDField(source="project_id")
    outputs = serializers.SerializerMethodField()
    credits = serializers.SerializerMethodField()
    queue_position = serializers.IntegerField(
        source="queue_place", allow_null=True, read_only=True,
        help_text="While queued: how many queued jobs the studio's workers take up before this one (0: it "
                  "is next; an estimate, as jobs waiting to retry count too). While running: the provider's "
                  "queue position, when it reports one. Otherwise null.")

    class Meta:
        model = Generation
        fields = ["id", "project", "model", "provider", "inputs", "status", "progress", "queue_position",
                  "logs", "outputs", "credits", "max_credits", "provider_cost_usd", "cost_usd_estimated", "key_source",
                  "fallback_models", "fallbacks_used", "error_code",
                  "error_message", "attempts", "provider_request_id", "created_at", "started_at",
                  "finished_at"]
        # Output only. Read-only fields also carry no database-dependent bounds into the schema.
        read_only_fields = fields

    def get_outputs(self, obj: Generation) -> list[str]:
        return [str(asset.pk) for asset in obj.outputs.all()]

    @extend_schema_field(GenerationCreditsSerializer)
    def get_credits(self, obj: Generation) -> dict[str, int]:
        # The row keeps the amount that was held (the charge is capped by it, and budgets release it);
        # what is on hold now is nothing once the job has ended.
        held = obj.credits_held if obj.is_active else 0
        return {"estimated": obj.credits_estimated, "held": held, "charged": obj.credits_charged}


class GenerationListSerializer(GenerationSerializer):
    class Meta(GenerationSerializer.Meta):
        fields = [f for f in GenerationSerializer.Meta.fields if f != "logs"]
        read_only_fields = fields


class GenerationFilter(ProjectScopedFilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)

    class Meta:
        model = Generation
        fields = ["project", "status"]


class GenerationViewSet(viewsets.ViewSet):
    """Every AI job: submit, follow, cancel."""

    lookup_value_converter = "uuid"
    pagination_class = CursorPagination  # the schema documents the page object from it

    @extend_schema(
        parameters=[OpenApiParameter("project", OpenApiTypes.UUID),
                    OpenApiParameter("status", str, enum=Status.values)],
        responses=GenerationListSerializer(many=True),
    )
    def list(self, request: Request) -> Response:
        qs = filter_or_400(GenerationFilter, request, generation_page_for_user(request.user))
        paginator = CursorPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(GenerationListSerializer(page, many=True).data)

    @extend_schema(request=GenerationCreateSerializer, responses={202: GenerationSerializer},
                   summary="Submit a generation; credits are held until it finishes")
    def create(self, request: Request) -> Response:
        data = GenerationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        generation = generation_create(user=request.user, project_id=data.validated_data["project"],
                                       model_id=data.validated_data["model"], inputs=data.validated_data["inputs"],
                                       fallback_models=data.validated_data["fallback_models"],
                                       max_credits=data.validated_data["max_credits"], rate_limit=True)
        return Response(GenerationSerializer(generation_get_for_user(request.user, generation.pk)).data,
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=GenerationSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(GenerationSerializer(generation_get_for_user(request.user, pk)).data)

    @extend_schema(request=None, responses=GenerationSerializer, summary="Cancel a queued or running job")
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        generation = generation_cancel(user=request.user, generation_id=pk)
        return Response(GenerationSerializer(generation_get_for_user(request.user, generation.pk)).data)

    @extend_schema(request=EstimateSerializer, responses=EstimateResultSerializer,
                   summary="Validate inputs and show the cost before submitting")
    @action(detail=False, methods=["post"])
    def estimate(self, request: Request) -> Response:
        data = EstimateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model, filled, estimate = generation_estimate(user=request.user, model_id=data.validated_data["model"],
                                                      inputs=data.validated_data["inputs"], draw_seed=False)
        return Response({"model": model.id, "inputs": filled, "credits": estimate.credits,
                         "cost_usd": estimate.cost_usd, "available": credits_summary(user=request.user).available})
