from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.services import credits_summary


class CreditsSerializer(serializers.Serializer):
    balance = serializers.IntegerField()
    held = serializers.IntegerField()
    available = serializers.IntegerField()


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    date_joined = serializers.DateTimeField()
    credits = CreditsSerializer()


class MeView(APIView):
    @extend_schema(responses=MeSerializer, summary="The signed-in user and their credits")
    def get(self, request: Request) -> Response:
        user = request.user
        return Response(MeSerializer({
            "id": user.pk, "email": user.email, "date_joined": user.date_joined,
            "credits": credits_summary(user=user).as_dict(),
        }).data)


