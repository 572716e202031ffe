"""The API's list bodies, and how the schema documents them.

A paginated list answers `{"next": url|null, "previous": url|null, "results": [...]}`: a view that
pages declares `pagination_class = CursorPagination`, so drf-spectacular wraps its list response in
that object (and documents `cursor` and `page_size`). A list small enough to answer whole still comes
in an object, `{"results": [...]}` with any extra top-level fields: its schema is
`results_serializer(...)`, which drf-spectacular must not wrap in an array again.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.pagination import CursorPagination as BaseCursorPagination


class CursorPagination(BaseCursorPagination):
    """Keyset pagination: the cost of a page does not grow with its depth, and no COUNT(*) is run."""

    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        # DRF's schema marks only `results` required; the body always carries all three.
        body = super().get_paginated_response_schema(schema)
        body["required"] = ["next", "previous", "results"]
        body["properties"]["next"]["description"] = "The next page, or null at the end."
        body["properties"]["previous"]["description"] = "The page before, or null on the first page."
        return body

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = f"Default {self.page_size}, at most {self.max_page_size}."
                parameter["schema"].update({"minimum": 1, "maximum": self.max_page_size})
        return parameters


def results_serializer(name: str, child: type[serializers.Serializer], **fields: serializers.Field
                       ) -> type[serializers.Serializer]:
    """The schema of an unpaginated list body: `{"results": [child, ...], **fields}`, named `name`."""
    attrs: dict[str, Any] = {"results": child(many=True, read_only=True), **fields}
    envelope = type(f"{name}Serializer", (serializers.Serializer,), attrs)
    return extend_schema_serializer(many=False, component_name=name)(envelope)
