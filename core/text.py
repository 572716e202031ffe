"""Cleaning the short texts people give things (a project's or a collection's name and description):
one implementation, so the limits and messages of every named thing read alike. Each caller states
its own limits and wording."""

from __future__ import annotations

from typing import Any

from core.errors import InvalidRequest


def name_clean(value: Any, *, max_length: int, missing: str, too_long: str, missing_field: str | None = None,
               any_type: bool = False, collapse_spaces: bool = False) -> str:
    """A required name, stripped (and with runs of whitespace made one space, with `collapse_spaces`), at
    most `max_length` characters. `missing` and `too_long` are the error's message; the field's own
    message is `missing_field` (default: `missing`) or "At most N characters.". With `any_type` a number
    or other value is taken as its text; otherwise anything but a string is missing."""
    if any_type:
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(missing, fields={"name": [missing_field or missing]})
    name = " ".join(value.split()) if collapse_spaces else value.strip()
    if len(name) > max_length:
        raise InvalidRequest(too_long, fields={"name": [f"At most {max_length} characters."]})
    return name


def description_clean(value: Any, *, max_length: int, strip: bool = False) -> str:
    """An optional description: text of at most `max_length` characters (counted before `strip`)."""
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidRequest(f"A description is text of at most {max_length} characters.",
                             fields={"description": [f"At most {max_length} characters."]})
    return value.strip() if strip else value
