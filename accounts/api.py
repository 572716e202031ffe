from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ProviderKey
from accounts.services import provider_key_delete
from billing.services import credits_summary
from core.pagination import results_serializer
from generations.credentials import provider_key_save


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




class ProviderKeySerializer(serializers.Serializer):
    provider = serializers.CharField()
    last4 = serializers.CharField(help_text="The last four characters; the key itself is never returned.")
    verified_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


class ProviderKeyWriteSerializer(serializers.Serializer):
    api_key = serializers.CharField(max_length=500, trim_whitespace=True, write_only=True)


class ProviderKeyViewSet(viewsets.ViewSet):
    """Your own provider keys. Jobs on your key are billed by the provider to you and charge no credits
    (or the platform fee). Keys are checked with the provider when saved and stored encrypted."""

    lookup_field = "provider"

    @extend_schema(responses=results_serializer("ProviderKeyList", ProviderKeySerializer))
    def list(self, request: Request) -> Response:
        rows = ProviderKey.objects.filter(user=request.user).order_by("provider")
        return Response({"results": ProviderKeySerializer(rows, many=True).data})

    @extend_schema(request=ProviderKeyWriteSerializer, responses=ProviderKeySerializer,
                   summary="Save (or replace) your key for a provider, after checking it with the provider")
    def update(self, request: Request, provider: str) -> Response:
        data = ProviderKeyWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = provider_key_save(user=request.user, provider=provider, api_key=data.validated_data["api_key"])
        return Response(ProviderKeySerializer(row).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, provider: str) -> Response:
        if not provider_key_delete(user=request.user, provider=provider):
            raise Http404("No key saved for that provider.")
        return Response(status=status.HTTP_204_NO_CONTENT)
