"""The gallery's query: a user's assets filtered, searched, sorted and cut into keyset pages.

One implementation serves the API (`GET /api/v1/assets`), the web gallery (`/gallery`) and
bench/gallery.py, so the three agree on what a filter means and on what a cursor holds.

Keyset, not OFFSET: a page is "the next N rows after this one in the sort order", written as one row
comparison, `(created_at, id) < (%s, %s)`, against an index whose columns follow the sort after the
owner (see migration 0003). The database seeks to the cursor and reads N + 1 rows, so page 1,000 costs
what page 1 costs, and nothing ever counts the list. DRF's CursorPagination keys on the first ordering
field alone and steps over ties with OFFSET: a bulk import that shares timestamps, or the rating sort
(six distinct values), would make it read every tied row before the page; hence this module.

Over 400 lines as one module: the filters, the sorts and the cursor encode one order together, and a
change to any of them must be read beside the others.
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
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, QuerySet
from django.db.models.expressions import Expression
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan, TupleLookupMixin
from django.db.models.functions import Lower
from django.db.models.lookups import Exact, GreaterThanOrEqual, LessThanOrEqual
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from assets.models import Asset, AssetKind, AssetSource, RatingKey
from core.errors import InvalidRequest
from projects.selectors import project_get_for_user

if TYPE_CHECKING:
    from accounts.models import User

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_TAG_FILTERS = 20
MAX_QUERY_LENGTH = 200
# Dates a filter or cursor may name: every database stores these after a shift to UTC or a day's step.
MIN_YEAR, MAX_YEAR = 1900, 9000
# Within 5% of 1:1 counts as square (1080×1080 and 1024×1000 alike); wider is landscape, taller portrait.
SQUARE_TOLERANCE = 1.05
# PostgreSQL's text-search configuration: 'simple' lowercases and splits, with no stemming and no stop
# words. Prompts come in many languages, and names, tags and model ids are tokens, not English words.
SEARCH_CONFIG = "simple"
# The parser reads "IMG_1234.png" or "refs/shot.jpg" as one file token; spaces in their place make
# "IMG_1234" find it. The same characters are replaced in the query, and in the GIN index (0003).
SEARCH_SPLIT_CHARS = "._/"


# --- sorts ---------------------------------------------------------------------------------------------


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
    "rating": Sort("rating", "Highest rated", True, lambda: [RatingKey(F("rating")), F("created_at"), F("id")],
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


MAX_CURSOR_LENGTH = 512  # ours are under 200 characters


def cursor_decode(token: str, sort: Sort) -> Cursor:
    """A cursor this module encoded for `sort`; anything else (forged, truncated, another sort's, from a
    different build) is a 400 naming the cursor, never a 500."""
    try:
        if len(token) > MAX_CURSOR_LENGTH:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or data.get("s") != sort.name:
            raise ValueError
        raw = data["k"]
        if not isinstance(raw, list) or len(raw) != len(sort.kinds):
            raise ValueError
        values: list[Any] = []
        for kind, value in zip(sort.kinds, raw, strict=True):
            if kind == "int":  # a rating: 0 (none) to 5
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 5:
                    raise ValueError
                values.append(value)
            elif not isinstance(value, str):
                raise ValueError
            elif kind == "dt":
                parsed = datetime.fromisoformat(value)
                # Aware, and a year every database can store after conversion to UTC (year 1 at +05:00
                # would fall before year 1).
                if timezone.is_naive(parsed) or not MIN_YEAR <= parsed.year <= MAX_YEAR:
                    raise ValueError
                values.append(parsed)
            else:
                values.append(uuid.UUID(value))
        return Cursor(sort.name, values, backwards=bool(data.get("b")))
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError, RecursionError):
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
        # The leading key's own bound is implied by the row comparison, and is for SQLite: it cannot
        # seek an expression index (the rating sort's) by a row value, but it can by this.
        first = LessThanOrEqual if descending else GreaterThanOrEqual
        queryset = queryset.filter(first(keys[0], cursor.values[0]), lookup(Tuple(*keys), cursor.values))
    rows = list(queryset.order_by(*[k.desc() if descending else k.asc() for k in keys])[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    # Going forward there is a next page when the extra row came back, and a previous one whenever
    # this page was reached by a cursor; going back, the other way round.
    has_next = True if backwards else more
    has_previous = more if backwards else cursor is not None
    next_cursor = Cursor(sort.name, sort.values(rows[-1])).encode() if rows and has_next else None
    previous_cursor = (Cursor(sort.name, sort.values(rows[0]), backwards=True).encode()
                       if rows and has_previous else None)
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


# --- parameters and filters ----------------------------------------------------------------------------
#
# Parsed by hand rather than with a django-filter FilterSet: a FilterSet deep-copies its filters and
# builds a form on every request, which cost more than the page query itself (bench/gallery.py).

class BadValue(ValueError):
    pass


def _choice(choices: list[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise BadValue(f"Expected one of: {', '.join(choices)}.")
        return text
    return parse


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise BadValue("Expected true or false.")


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise BadValue("Expected a whole number.") from None
        if not low <= value <= high:
            raise BadValue(f"Expected a whole number from {low} to {high}.")
        return value
    return parse


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadValue("Expected a number.") from None
    if not 0 <= value < 1e6:  # also refuses nan and inf
        raise BadValue("Expected a number of 0 or more.")
    return value


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise BadValue("Expected an id (a UUID).") from None


def _text(max_length: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if len(text) > max_length:
            raise BadValue(f"At most {max_length} characters.")
        return text
    return parse


def _date_bound(text: str) -> datetime | date:
    """A date (YYYY-MM-DD, the whole day in the site's time zone) or an ISO 8601 date-time."""
    try:
        # A bare date first: parse_datetime would read "2025-03-18" as its midnight.
        day = parse_date(text) if len(text) == 10 else None
        moment = parse_datetime(text) if day is None else None
    except ValueError:
        day = moment = None
    if day is None and moment is None:
        raise BadValue("Expected a date (YYYY-MM-DD) or an ISO 8601 date-time.")
    if not MIN_YEAR <= (day or moment).year <= MAX_YEAR:  # type: ignore[union-attr]
        # The day after 9999-12-31, or 9999-12-31T23:00-05:00 in UTC, does not exist.
        raise BadValue(f"Expected a date between the years {MIN_YEAR} and {MAX_YEAR}.")
    if day is not None:
        return day
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def _tag_names(values: list[str]) -> list[str]:
    names = list(dict.fromkeys(v.strip().lstrip("#") for v in values if v.strip().lstrip("#")))
    if len(names) > MAX_TAG_FILTERS:
        raise BadValue(f"At most {MAX_TAG_FILTERS} tags.")
    if any(len(n) > 64 for n in names):
        raise BadValue("A tag is at most 64 characters.")
    return names


ASPECTS = [("landscape", "Landscape"), ("portrait", "Portrait"), ("square", "Square")]
# name -> how one value is read. `tag` repeats (every value is kept); the rest take their last value.
PARAMETERS: dict[str, Callable[[str], Any]] = {
    "project": _uuid,
    "kind": _choice(AssetKind.values),
    "source": _choice(AssetSource.values),
    "model": _text(120),
    "provider": _text(40),
    "favourite": _boolean,
    "rating_gte": _integer(1, 5),
    "created_after": _date_bound,
    "created_before": _date_bound,
    "aspect": _choice([value for value, _ in ASPECTS]),
    "aspect_min": _positive_number,
    "aspect_max": _positive_number,
    "q": _text(MAX_QUERY_LENGTH),
    "trashed": _boolean,
    "sort": _choice(list(SORTS)),
    "cursor": _text(1000),
    "page_size": _integer(1, MAX_PAGE_SIZE),
}


def _values(params: Mapping[str, Any], name: str) -> list[str]:
    if hasattr(params, "getlist"):
        raw = params.getlist(name)
    else:
        raw = params.get(name)
        raw = [] if raw is None else raw if isinstance(raw, list | tuple) else [raw]
    return [str(v).strip() for v in raw]


def gallery_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The gallery's query parameters, checked: every bad one is reported, by name, in one
    InvalidRequest. Empty values mean "no filter"; unknown names are ignored."""
    cleaned: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, parse in PARAMETERS.items():
        values = [v for v in _values(params, name) if v]
        if not values:
            continue
        try:
            cleaned[name] = parse(values[-1])
        except BadValue as exc:
            errors[name] = [str(exc)]
    try:
        tags = _tag_names(_values(params, "tag"))
        if tags:
            cleaned["tag"] = tags
    except BadValue as exc:
        errors["tag"] = [str(exc)]
    if errors:
        first = next(iter(errors))
        raise InvalidRequest(f"{first}: {errors[first][0]}", fields=errors)
    return cleaned


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def gallery_filter(queryset: QuerySet[Asset], *, user: User, cleaned: dict[str, Any]) -> QuerySet[Asset]:
    """Apply checked parameters to the user's assets (trash included: `trashed` picks the side)."""
    # The trash is a list of its own: `trashed=true` shows only it, anything else only the rest.
    queryset = queryset.filter(deleted_at__isnull=not cleaned.get("trashed"))
    if "project" in cleaned:
        # Through the access funnel: another user's project is a 404, as on every route.
        queryset = queryset.filter(project=project_get_for_user(user, cleaned["project"]))
    for name, field in (("kind", "kind"), ("source", "source"), ("model", "model_id"), ("provider", "provider"),
                        ("favourite", "favourite")):
        if name in cleaned:
            queryset = queryset.filter(**{field: cleaned[name]})
    if "rating_gte" in cleaned:
        queryset = queryset.filter(rating__gte=cleaned["rating_gte"])
    if "created_after" in cleaned:
        after = cleaned["created_after"]
        queryset = queryset.filter(created_at__gte=after if isinstance(after, datetime) else _start_of(after))
    if "created_before" in cleaned:
        # A date includes its whole day; a date-time is an exclusive bound.
        before = cleaned["created_before"]
        queryset = queryset.filter(created_at__lt=before if isinstance(before, datetime)
                                   else _start_of(before + timedelta(days=1)))
    aspect = cleaned.get("aspect")
    if aspect == "landscape":
        queryset = queryset.filter(aspect__gt=SQUARE_TOLERANCE)
    elif aspect == "portrait":
        queryset = queryset.filter(aspect__lt=1 / SQUARE_TOLERANCE)
    elif aspect == "square":
        queryset = queryset.filter(aspect__gte=1 / SQUARE_TOLERANCE, aspect__lte=SQUARE_TOLERANCE)
    if "aspect_min" in cleaned:
        queryset = queryset.filter(aspect__gte=cleaned["aspect_min"])
    if "aspect_max" in cleaned:
        queryset = queryset.filter(aspect__lte=cleaned["aspect_max"])
    # Every tag named must be on the asset (tag=a&tag=b narrows). EXISTS per tag keeps the outer query
    # on its keyset index, and LOWER(name) matches the tags' unique index.
    through = Asset.tags.through
    for tag in cleaned.get("tag", []):
        queryset = queryset.filter(Exists(through.objects.filter(
            Exact(Lower("tag__name"), tag.lower()), asset_id=OuterRef("pk"), tag__owner=user)))
    if cleaned.get("q"):
        queryset = search_filter(queryset, cleaned["q"])
    return queryset


@dataclass
class GalleryQuery:
    queryset: QuerySet[Asset]
    sort: Sort
    cursor: Cursor | None
    page_size: int
    cleaned: dict[str, Any]


def gallery_query(*, user: User, params: Mapping[str, Any], queryset: QuerySet[Asset]) -> GalleryQuery:
    """Check `params` and apply them to `queryset` (the user's assets, trash included). Raises
    InvalidRequest naming every bad field."""
    cleaned = gallery_params(params)
    sort = SORTS[cleaned.get("sort", DEFAULT_SORT)]
    cursor = cursor_decode(cleaned["cursor"], sort) if cleaned.get("cursor") else None
    return GalleryQuery(gallery_filter(queryset, user=user, cleaned=cleaned), sort, cursor,
                        cleaned.get("page_size", PAGE_SIZE), cleaned)


# --- presentation helpers shared by the API and the page ------------------------------------------------

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
