"""Buying credits over the API, and Stripe's webhook. The money itself moves in billing/stripe/."""

from __future__ import annotations

import logging

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import CheckoutSession, CreditPack
from billing.stripe.checkout import (
    checkout_session_create,
    checkout_session_get_for_user,
    checkout_session_list_for_user,
    credit_pack_list,
)
from billing.stripe.client import payments_enabled
from billing.stripe.events import WebhookRejected, stripe_event_handle, stripe_event_verify
from core.pagination import CursorPagination, results_serializer

logger = logging.getLogger(__name__)


class CreditPackSerializer(serializers.ModelSerializer):
    class Meta:
        model = CreditPack
        fields = ["code", "name", "credits", "price_cents", "currency"]
        # Output only; read-only fields also carry no database-dependent bounds into the schema.
        read_only_fields = fields


class CheckoutSessionSerializer(serializers.ModelSerializer):
    pack = serializers.SlugRelatedField(slug_field="code", read_only=True)
    url = serializers.CharField(help_text="Stripe's hosted payment page: send the buyer here.")
    status = serializers.CharField(help_text="open, paid (credits posted), failed, expired or refunded.")

    class Meta:
        model = CheckoutSession
        fields = ["id", "url", "pack", "credits", "amount_total", "currency", "status", "refunded_credits",
                  "created_at", "paid_at"]
        read_only_fields = fields


class CheckoutSessionCreateSerializer(serializers.Serializer):
    pack = serializers.CharField(max_length=40, help_text="A credit pack's code, from GET /api/v1/credit-packs.")


class CreditPackListView(APIView):
    @extend_schema(responses=results_serializer(
        "CreditPackList", CreditPackSerializer,
        payments_enabled=serializers.BooleanField(read_only=True, help_text="Whether buying is on (Stripe is "
                                                                           "configured).")),
        summary="Credit packs on sale", operation_id="api_v1_credit_packs_list")
    def get(self, request: Request) -> Response:
        packs = credit_pack_list()
        return Response({"payments_enabled": payments_enabled(),
                         "results": CreditPackSerializer(packs, many=True).data})


class CheckoutSessionListCreateView(APIView):
    pagination_class = CursorPagination  # the schema documents the page object from it

    @extend_schema(responses=CheckoutSessionSerializer(many=True), summary="Your credit purchases")
    def get(self, request: Request) -> Response:
        paginator = CursorPagination()
        page = paginator.paginate_queryset(checkout_session_list_for_user(request.user), request,
                                           view=self)
        return paginator.get_paginated_response(CheckoutSessionSerializer(page, many=True).data)

    @extend_schema(request=CheckoutSessionCreateSerializer, responses={201: CheckoutSessionSerializer},
                   summary="Start buying a credit pack: returns a Stripe Checkout url. Credits are added when "
                           "Stripe confirms the payment, not when the buyer returns.")
    def post(self, request: Request) -> Response:
        data = CheckoutSessionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = checkout_session_create(user=request.user, pack_code=data.validated_data["pack"])
        return Response(CheckoutSessionSerializer(session).data, status=status.HTTP_201_CREATED)


class CheckoutSessionDetailView(APIView):
    @extend_schema(responses=CheckoutSessionSerializer, summary="One of your credit purchases")
    def get(self, request: Request, session_id: str) -> Response:
        session = checkout_session_get_for_user(request.user, session_id)
        return Response(CheckoutSessionSerializer(session).data)


class StripeWebhookView(APIView):
    """Stripe's events. Authenticated by the Stripe-Signature header over the raw body, so no session,
    token, CSRF check, throttle or body parsing applies (parsing would consume the raw bytes the
    signature covers)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    parser_classes: list = []

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        try:
            payload = stripe_event_verify(body=request.body, signature=request.headers.get("Stripe-Signature"))
        except WebhookRejected as exc:
            logger.warning("refused stripe webhook: %s", exc)
            return Response({"error": {"code": exc.code, "message": str(exc)}},
                            status=status.HTTP_400_BAD_REQUEST)
        outcome = stripe_event_handle(payload=payload)
        return Response({"received": True, "outcome": outcome})
