"""Usage reports (JSON and CSV) and referral codes over the API."""

from __future__ import annotations

import csv
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.referrals import referral_bonus, referral_code_get_or_create, referral_redeem
from billing.usage.services import GROUPINGS, UsageQuery, UsageRow, usage_rows, usage_totals
from orchestration.usage import usage_query_parse

CSV_COLUMNS = ["key", "label", "generations", "succeeded", "failed", "success_rate", "credits", "provider_cost_usd"]

USAGE_PARAMETERS = [
    OpenApiParameter("group_by", str, enum=list(GROUPINGS), description="How rows are grouped (default day)."),
    OpenApiParameter("from", OpenApiTypes.DATE, description="First day, inclusive (default 29 days before `to`)."),
    OpenApiParameter("to", OpenApiTypes.DATE, description="Last day, inclusive (default today)."),
    OpenApiParameter("project", OpenApiTypes.UUID, description="Only this project's usage."),
]


class UsageRowSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The day (YYYY-MM-DD), month (YYYY-MM), model id, provider or project id.")
    label = serializers.CharField()
    generations = serializers.IntegerField(help_text="Finished generations (canceled ones are not usage).")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    credits = serializers.IntegerField()
    provider_cost_usd = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=True)


class UsageSerializer(serializers.Serializer):
    # The dates are named like the query parameters, `from` and `to`: Python keywords, so they are
    # declared in get_fields().
    group_by = serializers.ChoiceField(choices=GROUPINGS)
    project = serializers.UUIDField(allow_null=True)
    totals = UsageRowSerializer()
    results = UsageRowSerializer(many=True)

    def get_fields(self) -> dict[str, serializers.Field]:
        declared = super().get_fields()
        return {"group_by": declared["group_by"],
                "from": serializers.DateField(help_text="First day of the report, inclusive."),
                "to": serializers.DateField(help_text="Last day of the report, inclusive."),
                **{name: field for name, field in declared.items() if name != "group_by"}}


def _report(request: Request) -> tuple[UsageQuery, list[UsageRow], UsageRow]:
    query = usage_query_parse(user=request.user, params=request.query_params)
    return query, usage_rows(user=request.user, query=query), usage_totals(user=request.user, query=query)


class UsageView(APIView):
    @extend_schema(parameters=USAGE_PARAMETERS, responses=UsageSerializer,
                   summary="Your usage: generations, credits, provider cost and success rate per group")
    def get(self, request: Request) -> Response:
        query, rows, totals = _report(request)
        return Response({
            "group_by": query.group_by, "from": query.date_from.isoformat(), "to": query.date_to.isoformat(),
            "project": str(query.project.pk) if query.project is not None else None,
            "totals": totals.as_dict(), "results": [row.as_dict() for row in rows],
        })


class UsageCsvView(APIView):
    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The file is CSV whatever the client accepts (`Accept: text/csv` must not be a 406); errors
        # still come back in the API's JSON error shape.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(parameters=USAGE_PARAMETERS, responses={(200, "text/csv"): OpenApiTypes.STR},
                   summary="The same report as CSV, with a total row last")
    def get(self, request: Request) -> HttpResponse:
        query, rows, totals = _report(request)
        return usage_csv_response(query, rows, totals)


def usage_csv_response(query: UsageQuery, rows: list[UsageRow], totals: UsageRow) -> HttpResponse:
    """Shared with the web page's CSV link, so both exports are the same file."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"usage-{query.group_by}-{query.date_from.isoformat()}-{query.date_to.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for row in [*rows, totals]:
        data: dict[str, Any] = row.as_dict()
        rate = data["success_rate"]
        data["success_rate"] = "" if rate is None else f"{rate:.4f}"
        # A label starting with = + - @ would run as a formula in a spreadsheet (CSV injection).
        data["label"] = "'" + data["label"] if str(data["label"])[:1] in "=+-@" else data["label"]
        writer.writerow([data[column] for column in CSV_COLUMNS])
    return response


class ReferralCodeSerializer(serializers.Serializer):
    code = serializers.CharField()
    bonus = serializers.IntegerField(help_text="Credits each side gets when someone redeems the code.")
    redeemed = serializers.IntegerField(help_text="How many users redeemed your code.")


class ReferralRedeemSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=40)


class ReferralRedeemedSerializer(serializers.Serializer):
    code = serializers.CharField()
    bonus = serializers.IntegerField()
    redeemed_at = serializers.DateTimeField()


class ReferralCodeView(APIView):
    @extend_schema(responses=ReferralCodeSerializer, summary="Your referral code (made on first request)")
    def get(self, request: Request) -> Response:
        row = referral_code_get_or_create(user=request.user)
        return Response({"code": row.code, "bonus": referral_bonus(), "redeemed": row.referrals.count()})


class ReferralRedeemView(APIView):
    @extend_schema(request=ReferralRedeemSerializer, responses={201: ReferralRedeemedSerializer},
                   summary="Redeem someone's referral code: you both get a one-time bonus")
    def post(self, request: Request) -> Response:
        data = ReferralRedeemSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        referral = referral_redeem(user=request.user, code=data.validated_data["code"])
        return Response({"code": referral.code.code, "bonus": referral_bonus(), "redeemed_at": referral.created_at},
                        status=status.HTTP_201_CREATED)
