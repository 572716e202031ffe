"""The gallery's query: a user's assets filtered, searched, sorted and cut into keyset pages.

One implementation serves the API (`GET /api/v1/assets`), the web gallery (`/gallery`) and
bench/gallery.py, so the three agree on what a filter means and on what a cursor holds.

Keyset, not OFFSET: a page is "the next N rows after this one in the sort order", written as one row
comparison, `(created_at, id) < (%s, %s)`, against an index whose columns follow the sort after the
owner (see migration 0003). The database seeks to the cursor and reads N + 1 rows, so page 1,000 costs
what page 1 costs, and nothing ever counts the list. DRF's CursorPagination keys on the first ordering
field alone and steps over ties with OFFSET: a bulk import that shares timestamps, or the rating sort
(six distinct values), would make it read every tied row before the page; hence this module.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import django_filters
from django import forms
from django.db import connections
from django.db.models import BooleanField, Exists, F, Func, OuterRef, PositiveSmallIntegerField, Q, QuerySet
from django.db.models.expressions import Expression
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan, TupleLookupMixin
from django.db.models.functions import Lower
from django.db.models.lookups import Exact
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from assets.models import Asset, AssetKind, AssetSource
from config.errors import InvalidRequest
from projects.selectors import project_get_for_user

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_TAG_FILTERS = 20
MAX_QUERY_LENGTH = 200
# Within 5% of 1:1 counts as square (1080×1080 and 1024×1000 alike); wider is landscape, taller portrait.
SQUARE_TOLERANCE = 1.05
# PostgreSQL's text-search configuration: 'simple' lowercases and splits, with no stemming and no stop
# words. Prompts come in many languages, and names, tags and model ids are tokens, not English words.
SEARCH_CONFIG = "simple"
# The parser reads "IMG_1234.png" or "refs/shot.jpg" as one file token; spaces in their place make
# "IMG_1234" find it. The same characters are replaced in the query, and in the GIN index (0003).
SEARCH_SPLIT_CHARS = "._/"


# --- sorts ---------------------------------------------------------------------------------------------

class RatingKey(Func):
    """The rating with unrated as 0, so the rating sort is a plain keyset with unrated assets last.
    The literal 0 (not a parameter) is deliberate: SQLite matches an expression index only against
    identical SQL, and migration 0003 indexes `COALESCE("rating", 0)`."""

    template = "COALESCE(%(expressions)s, 0)"
    output_field = PositiveSmallIntegerField()

    def __init__(self) -> None:
        super().__init__(F("rating"))


@dataclass(frozen=True)
class Sort:
    name: str
    label: str
    descending: bool
    keys: Callable[[], list[Expression]]
    # The row's values for `keys` and how each is written into and read back from a cursor.
    values: Callable[[Asset], list[Any]]
    kinds: tuple[str, ...]


def _recent_keys() -> list[Expression]:
    return [F("created_at"), F("id")]


SORTS: dict[str, Sort] = {
    "newest": Sort("newest", "Newest first", True, _recent_keys, lambda a: [a.created_at, a.pk], ("dt", "uuid")),
    "oldest": Sort("oldest", "Oldest first", False, _recent_keys, lambda a: [a.created_at, a.pk], ("dt", "uuid")),
    "rating": Sort("rating", "Highest rated", True, lambda: [RatingKey(), F("created_at"), F("id")],
                   lambda a: [a.rating or 0, a.created_at, a.pk], ("int", "dt", "uuid")),
}
DEFAULT_SORT = "newest"


class _RowBefore(TupleLessThan):
    """`(a, b, c) < (x, y, z)` as one row comparison on every backend. Django writes it out as nested
    ORs on SQLite, which SQLite cannot turn into an index seek; SQLite has compared row values since
    3.15 (2016), and PostgreSQL uses the comparison as an index bound when the index follows it."""

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return super(TupleLookupMixin, self).as_sql(compiler, connection)


class _RowAfter(TupleGreaterThan):
    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return super(TupleLookupMixin, self).as_sql(compiler, connection)


# --- cursors -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cursor:
    sort: str
    values: list[Any]
    backwards: bool = False

    def encode(self) -> str:
        raw = [v.isoformat() if isinstance(v, datetime) else v.hex if isinstance(v, uuid.UUID) else v
               for v in self.values]
        payload = json.dumps({"s": self.sort, "k": raw, "b": int(self.backwards)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


BAD_CURSOR = "Not a cursor of this list (it may belong to another sort order); start again from the first page."


def cursor_decode(token: str, sort: Sort) -> Cursor:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or data.get("s") != sort.name:
            raise ValueError
        raw = data["k"]
        if not isinstance(raw, list) or len(raw) != len(sort.kinds):
            raise ValueError
        values: list[Any] = []
        for kind, value in zip(sort.kinds, raw, strict=True):
            if kind == "int":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError
                values.append(value)
            elif kind == "dt":
                parsed = datetime.fromisoformat(value)
                if timezone.is_naive(parsed):
                    raise ValueError
                values.append(parsed)
            else:
                values.append(uuid.UUID(value))
        return Cursor(sort.name, values, backwards=bool(data.get("b")))
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(f"cursor: {BAD_CURSOR}", fields={"cursor": [BAD_CURSOR]}) from None


@dataclass
class GalleryPage:
    assets: list[Asset]
    sort: str
    next_cursor: str | None
    previous_cursor: str | None


def keyset_page(queryset: QuerySet[Asset], *, sort: Sort, cursor: Cursor | None, size: int) -> GalleryPage:
    """One page of `queryset` in `sort` order after (or, going back, before) `cursor`: one query of
    size + 1 rows, the extra row telling whether there is more."""
    backwards = cursor is not None and cursor.backwards
    descending = sort.descending != backwards
    keys = sort.keys()
    if cursor is not None:
        lookup = _RowBefore if descending else _RowAfter
        queryset = queryset.filter(lookup(Tuple(*keys), cursor.values))
    rows = list(queryset.order_by(*[k.desc() if descending else k.asc() for k in keys])[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    next_cursor = previous_cursor = None
    if rows:
        # Going forward there is a next page when the extra row came back, and a previous one whenever
        # this page was reached by a cursor; going back, the other way round.
        if more if not backwards else True:
            next_cursor = Cursor(sort.name, sort.values(rows[-1])).encode()
        if (cursor is not None) if not backwards else more:
            previous_cursor = Cursor(sort.name, sort.values(rows[0]), backwards=True).encode()
    return GalleryPage(rows, sort.name, next_cursor, previous_cursor)


# --- search --------------------------------------------------------------------------------------------

class FullTextMatch(Func):
    """PostgreSQL: `to_tsvector(...) @@ websearch_to_tsquery(...)`, written exactly as the GIN index
    of migration 0003 is, so the planner can use it. websearch syntax: words are ANDed, "quoted
    phrases", `or`, and `-word` to exclude."""

    output_field = BooleanField()

    def __init__(self, text: str) -> None:
        super().__init__(F("search_text"))
        self.text = text

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.source_expressions[0])
        split, spaces = SEARCH_SPLIT_CHARS, " " * len(SEARCH_SPLIT_CHARS)
        sql = (f"to_tsvector('{SEARCH_CONFIG}'::regconfig, translate({column}, '{split}', '{spaces}'))"
               f" @@ websearch_to_tsquery('{SEARCH_CONFIG}'::regconfig, %s)")
        return sql, [*params, self.text]


_TERM = re.compile(r'(-?)"([^"]*)"?|(\S+)')


def search_terms(text: str) -> list[list[tuple[bool, str]]]:
    """The query as websearch reads it: groups joined by `or`, each a list of (negated, term)."""
    groups: list[list[tuple[bool, str]]] = [[]]
    for match in _TERM.finditer(text):
        if match.group(2) is not None:
            negated, term = bool(match.group(1)), match.group(2).strip()
        else:
            word = match.group(3)
            if word.lower() == "or":
                groups.append([])
                continue
            negated = word.startswith("-") and len(word) > 1
            term = word[1:] if negated else word
        if term:
            groups[-1].append((negated, term))
    return [g for g in groups if g]


def search_filter(queryset: QuerySet[Asset], text: str) -> QuerySet[Asset]:
    """Full-text search over name, prompt, notes and tag names (`Asset.search_text`).

    PostgreSQL: whole words, case-insensitive, through the GIN index. Elsewhere (SQLite): the same
    syntax, each term a case-insensitive substring (so "sun" also finds "sunset"), by a scan of the
    user's rows; fine for a development database, and documented in docs/assets/gallery.md."""
    text = text.strip()
    if not re.search(r"\w", text):
        return queryset  # nothing searchable ("", quotes, dashes): the whole list, not an empty one
    if connections[queryset.db].vendor == "postgresql":
        return queryset.filter(FullTextMatch(text.translate({ord(c): " " for c in SEARCH_SPLIT_CHARS})))
    condition = Q()
    for group in search_terms(text):
        both = Q()
        for negated, term in group:
            both &= ~Q(search_text__icontains=term) if negated else Q(search_text__icontains=term)
        condition |= both
    return queryset.filter(condition)


# --- filters -------------------------------------------------------------------------------------------

class StrictBooleanField(forms.Field):
    """true/false (also 1/0, yes/no, on/off); anything else is an error rather than "no filter"."""

    TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise forms.ValidationError("Expected true or false.")


class StrictBooleanFilter(django_filters.Filter):
    field_class = StrictBooleanField


class IntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class DateBoundField(forms.Field):
    """A date (YYYY-MM-DD, the whole day in the site's time zone) or an ISO 8601 date-time."""

    def to_python(self, value: Any) -> datetime | date | None:
        if value in (None, ""):
            return None
        text = str(value).strip()
        try:
            # A bare date first: parse_datetime would read "2025-03-18" as its midnight.
            day = parse_date(text) if len(text) == 10 else None
            if day is not None:
                return day
            moment = parse_datetime(text)
        except ValueError:
            moment = None
        if moment is None:
            raise forms.ValidationError("Expected a date (YYYY-MM-DD) or an ISO 8601 date-time.")
        return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class DateBoundFilter(django_filters.Filter):
    field_class = DateBoundField


class NamesField(forms.Field):
    """A repeatable parameter (`tag=a&tag=b`): a list of names."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        if isinstance(value, str):  # a plain dict of parameters rather than a QueryDict
            value = [value]
        names = list(dict.fromkeys(v.strip().lstrip("#") for v in value if isinstance(v, str) and v.strip()))
        if len(names) > MAX_TAG_FILTERS:
            raise forms.ValidationError(f"At most {MAX_TAG_FILTERS} tags.")
        if any(len(n) > 64 for n in names):
            raise forms.ValidationError("A tag is at most 64 characters.")
        return names


class NamesFilter(django_filters.Filter):
    field_class = NamesField


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


ASPECTS = [("landscape", "Landscape"), ("portrait", "Portrait"), ("square", "Square")]


class GalleryFilter(django_filters.FilterSet):
    """The gallery's query parameters. Every value is checked: a bad one is a 400 naming the field."""

    project = django_filters.UUIDFilter(method="filter_project")
    kind = django_filters.ChoiceFilter(choices=AssetKind.choices)
    source = django_filters.ChoiceFilter(choices=AssetSource.choices)
    model = django_filters.CharFilter(field_name="model_id", max_length=120)
    provider = django_filters.CharFilter(field_name="provider", max_length=40)
    tag = NamesFilter(method="filter_tags")
    favourite = StrictBooleanFilter(field_name="favourite")
    rating_gte = IntegerFilter(field_name="rating", lookup_expr="gte", min_value=1, max_value=5)
    created_after = DateBoundFilter(method="filter_created_after")
    created_before = DateBoundFilter(method="filter_created_before")
    aspect = django_filters.ChoiceFilter(choices=ASPECTS, method="filter_aspect")
    aspect_min = django_filters.NumberFilter(field_name="aspect", lookup_expr="gte", min_value=0)
    aspect_max = django_filters.NumberFilter(field_name="aspect", lookup_expr="lte", min_value=0)
    q = django_filters.CharFilter(method="filter_search", max_length=MAX_QUERY_LENGTH)
    trashed = StrictBooleanFilter(method="filter_nothing")
    # Not filters, but parameters of the same request, checked and reported with them.
    sort = django_filters.ChoiceFilter(choices=[(s.name, s.label) for s in SORTS.values()], method="filter_nothing")
    cursor = django_filters.CharFilter(method="filter_nothing", max_length=1000)
    page_size = IntegerFilter(method="filter_nothing", min_value=1, max_value=MAX_PAGE_SIZE)

    class Meta:
        model = Asset
        fields: list[str] = []

    def __init__(self, data: Any, *, user: Any, queryset: QuerySet[Asset]) -> None:
        super().__init__(data, queryset=queryset)
        self.user = user

    def filter_queryset(self, queryset: QuerySet[Asset]) -> QuerySet[Asset]:
        # The trash is a list of its own: `trashed=true` shows only it, anything else only the rest.
        queryset = queryset.filter(deleted_at__isnull=not self.form.cleaned_data.get("trashed"))
        return super().filter_queryset(queryset)

    def filter_nothing(self, queryset: QuerySet[Asset], name: str, value: Any) -> QuerySet[Asset]:
        return queryset

    def filter_project(self, queryset: QuerySet[Asset], name: str, value: uuid.UUID) -> QuerySet[Asset]:
        # Through the access funnel: another user's project is a 404, as on every route.
        return queryset.filter(project=project_get_for_user(self.user, value))

    def filter_tags(self, queryset: QuerySet[Asset], name: str, value: list[str]) -> QuerySet[Asset]:
        # Every tag named must be on the asset (tag=a&tag=b narrows). EXISTS per tag keeps the outer
        # query on its keyset index, and LOWER(name) matches the tags' unique index.
        through = Asset.tags.through
        for tag in value:
            queryset = queryset.filter(Exists(through.objects.filter(
                Exact(Lower("tag__name"), tag.lower()), asset_id=OuterRef("pk"), tag__owner=self.user)))
        return queryset

    def filter_created_after(self, queryset: QuerySet[Asset], name: str, value: Any) -> QuerySet[Asset]:
        return queryset.filter(created_at__gte=value if isinstance(value, datetime) else _start_of(value))

    def filter_created_before(self, queryset: QuerySet[Asset], name: str, value: Any) -> QuerySet[Asset]:
        # A date includes its whole day; a date-time is an exclusive bound.
        if not isinstance(value, datetime):
            value = _start_of(value + timedelta(days=1))
        return queryset.filter(created_at__lt=value)

    def filter_aspect(self, queryset: QuerySet[Asset], name: str, value: str) -> QuerySet[Asset]:
        if value == "landscape":
            return queryset.filter(aspect__gt=SQUARE_TOLERANCE)
        if value == "portrait":
            return queryset.filter(aspect__lt=1 / SQUARE_TOLERANCE)
        return queryset.filter(aspect__gte=1 / SQUARE_TOLERANCE, aspect__lte=SQUARE_TOLERANCE)

    def filter_search(self, queryset: QuerySet[Asset], name: str, value: str) -> QuerySet[Asset]:
        return search_filter(queryset, value)


@dataclass
class GalleryQuery:
    queryset: QuerySet[Asset]
    sort: Sort
    cursor: Cursor | None
    page_size: int
    cleaned: dict[str, Any]


def gallery_query(*, user: Any, params: Mapping[str, Any], queryset: QuerySet[Asset]) -> GalleryQuery:
    """Check `params` and apply them to `queryset` (the user's assets, trash included: the `trashed`
    parameter picks the side). Raises InvalidRequest naming every bad field."""
    filterset = GalleryFilter(params, user=user, queryset=queryset)
    if not filterset.is_valid():
        fields = {field: [str(e) for e in errors] for field, errors in filterset.errors.items()}
        first = next(iter(fields))
        raise InvalidRequest(f"{first}: {fields[first][0]}", fields=fields)
    cleaned = filterset.form.cleaned_data
    sort = SORTS[cleaned.get("sort") or DEFAULT_SORT]
    cursor = cursor_decode(cleaned["cursor"], sort) if cleaned.get("cursor") else None
    return GalleryQuery(filterset.qs, sort, cursor, cleaned.get("page_size") or PAGE_SIZE, cleaned)


# --- presentation helpers shared by the API and the page ------------------------------------------------

def thumbnail_urls(asset: Asset, *, api: bool = False) -> dict[str, str | None]:
    """The asset's thumbnails by size ("small", "large"), None until the preview worker has made them
    (the client shows the blurhash or a kind icon meanwhile). `api=True` gives the API's
    `/api/v1/assets/{id}/thumbnail?size=…` URLs; otherwise the web app's preview route, which a page of
    fifty tiles can load without spending the API rate limit. Both are versioned and cache for good."""
    from assets.preview_views import asset_preview_urls

    return asset_preview_urls(asset, api=api)


_B83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


def blurhash_average(blurhash: str) -> str | None:
    """The blurhash's DC component (the image's average colour) as #rrggbb: a placeholder that needs
    no JavaScript. Characters 2-5 of a blurhash are that colour in base 83."""
    if len(blurhash) < 6:
        return None
    value = 0
    for char in blurhash[2:6]:
        digit = _B83.find(char)
        if digit < 0:
            return None
        value = value * 83 + digit
    return f"#{value:06x}" if value <= 0xFFFFFF else None
