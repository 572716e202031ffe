"""The usage report's query: billing's period and grouping, and a project through the projects' access
funnel (projects sit above billing, so the two meet here)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from billing.usage.services import UsageQuery, usage_period_parse
from projects.selectors import project_get_for_user

if TYPE_CHECKING:
    from accounts.models import User


def usage_query_parse(*, user: User, params: Mapping[str, str], default_group_by: str = "day") -> UsageQuery:
    """Read `group_by`, `from`, `to` and `project` from query parameters, shared by the API, the CSV
    export and the web page. The period is checked first, then the project comes through the access
    funnel (404 for one the user may not see). Defaults: the last 30 days, by day, all projects."""
    query = usage_period_parse(params=params, default_group_by=default_group_by)
    if params.get("project"):
        query = dataclasses.replace(query, project=project_get_for_user(user, params["project"]))
    return query
