"""The OpenAPI schema's tags and summaries, decided in one place.

drf-spectacular tags an operation with the first part of its path, which for every route here is
"api", and leaves the summary empty unless a view names one. `StudioAutoSchema` (REST_FRAMEWORK's
DEFAULT_SCHEMA_CLASS) tags each operation with its area, from the path (`AREAS`; the tags and their
descriptions are SPECTACULAR_SETTINGS["TAGS"]), and gives the standard viewset actions a summary
built from the resource's name when the view does not write its own. A view's own
`extend_schema(tags=..., summary=...)` still wins. tests/api/test_schema.py holds every operation to a known tag and a summary.
"""

from __future__ import annotations

import re

from drf_spectacular.openapi import AutoSchema

# The area of each first path segment under /api/v1/, and of a few sub-resources that belong to
# another area than their parent (a project's budget is a budget, its export an export).
AREAS: dict[str, str] = {
    "me": "account",
    "provider-keys": "account",
    "referrals": "account",
    "projects": "projects",
    "models": "models",
    "generations": "generations",
    "assets": "assets",
    "tags": "assets",
    "storage": "assets",
    "collections": "collections",
    "shares": "shares",
    "credit-packs": "credits",
    "checkout-sessions": "credits",
    "usage": "usage",
    "usage.csv": "usage",
    "notifications": "notifications",
}
SUB_AREAS: dict[str, str] = {"budget": "budgets", "export": "exports"}


# (singular, plural) of each resource whose viewset actions are summarised from a template.
NOUNS: dict[str, tuple[str, str]] = {
    "projects": ("project", "your projects"),
    "models": ("model", "models in the catalog"),
    "generations": ("generation", "your generations, newest first"),
    "assets": ("asset", "your assets"),
    "tags": ("tag", "your tags"),
    "collections": ("collection", "your collections"),
    "shares": ("share link", "your share links"),
    "provider-keys": ("provider key", "your provider keys"),
}
ACTION_SUMMARIES: dict[str, str] = {
    "list": "List {plural}",
    "create": "Create {a} {singular}",
    "retrieve": "Get {a} {singular}",
    "update": "Replace {a} {singular}",
    "partial_update": "Change {a} {singular}",
    "destroy": "Delete {a} {singular}",
}

_API_PREFIX = re.compile(r"^/api/v\d+/")


def _segments(path: str) -> list[str]:
    return [part for part in _API_PREFIX.sub("", path).split("/") if part and not part.startswith("{")]


def area_for_path(path: str) -> str | None:
    segments = _segments(path)
    for segment in reversed(segments[1:]):
        if segment in SUB_AREAS:
            return SUB_AREAS[segment]
    return AREAS.get(segments[0]) if segments else None


class StudioAutoSchema(AutoSchema):
    def get_tags(self) -> list[str]:
        area = area_for_path(self.path)
        return [area] if area else super().get_tags()

    def get_summary(self) -> str | None:
        summary = super().get_summary()
        if summary:
            return summary
        action = getattr(self.view, "action", None)
        segments = _segments(self.path)
        if action in ACTION_SUMMARIES and segments and segments[0] in NOUNS:
            singular, plural = NOUNS[segments[0]]
            article = "an" if singular[0] in "aeiou" else "a"
            return ACTION_SUMMARIES[action].format(a=article, singular=singular, plural=plural)
        return None
