"""The access funnel for projects: every entry point (API, web, CLI, admin actions) comes through here."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.db.models import QuerySet
from django.http import Http404

from core.lookups import by_id_or_404
from projects.models import Project

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User


def project_list_for_user(user: User | AnonymousUser, *, include_archived: bool = True) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    qs = Project.objects.filter(owner=user)
    if not include_archived:
        qs = qs.filter(archived=False)
    return qs


def project_get_for_user(user: User | AnonymousUser, project_id: uuid.UUID | str, *, write: bool = False) -> Project:
    """The project if `user` may see it (or change it, with write=True); otherwise 404, never 403,
    so an outsider cannot tell another user's project exists. Today only the owner has access, so
    `write` grants nothing more; members and roles will widen this one function, not its callers."""
    return by_id_or_404(project_list_for_user(user), project_id, "No such project.")


class AmbiguousProject(Exception):
    """A project reference that matches more than one of the user's projects; the message lists them."""


def project_get_by_ref_for_user(user: User, ref: str) -> Project:
    """The project a person names on a command line: its id, or its name (exact, else any case). A
    UUID-shaped ref is tried as an id first. Several matches (names differing only in case, or a name
    that is also another project's id) raise AmbiguousProject listing each name and id; none is a 404,
    like every other route, so another user's project looks the same as a missing one."""
    ref = ref.strip()
    projects = project_list_for_user(user)
    try:
        by_id = list(projects.filter(pk=uuid.UUID(ref)))
    except ValueError:
        by_id = []
    by_name = list(projects.filter(name=ref)) or list(projects.filter(name__iexact=ref).order_by("name"))
    matches = list({p.pk: p for p in by_id + by_name}.values())
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise Http404(f"No project named {ref!r} and none with that id.")
    listing = "; ".join(f"{p.name!r} ({p.pk})" for p in matches)
    raise AmbiguousProject(f"{ref!r} matches {len(matches)} projects: {listing}. Pass the id.")
