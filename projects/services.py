"""A project's own fields: create, rename, describe, tag, archive, set fallbacks. Changes that reach into
other apps (deleting a project with its assets and jobs, checking fallbacks against the catalog) are
orchestration.projects'."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from core.errors import Conflict
from core.text import description_clean, name_clean
from projects.models import DESCRIPTION_MAX, NAME_MAX, Project

if TYPE_CHECKING:
    from accounts.models import User


def _clean_tags(tags: list[Any] | None) -> list[str]:
    if not tags:
        return []
    cleaned: list[str] = []
    for tag in tags:
        text = str(tag).strip()[:40]
        if text and text not in cleaned:
            cleaned.append(text)
    return cleaned[:30]


def _clean_name(name: Any) -> str:
    return name_clean(name, max_length=NAME_MAX, missing="A project needs a name.", any_type=True,
                      too_long=f"A project name is at most {NAME_MAX} characters.")


def _clean_description(description: Any) -> str:
    return description_clean(description, max_length=DESCRIPTION_MAX)


@transaction.atomic
def project_create(*, owner: User, name: str, description: str = "", tags: list[str] | None = None) -> Project:
    name = _clean_name(name)
    description = _clean_description(description)
    try:
        with transaction.atomic():
            return Project.objects.create(owner=owner, name=name, description=description,
                                          tags=_clean_tags(tags))
    except IntegrityError:
        raise Conflict(f"You already have a project named {name!r}.",
                           fields={"name": [f"You already have a project named {name!r}."]})


@transaction.atomic
def project_update(*, project: Project, **changes: Any) -> Project:
    if "name" in changes:
        name = _clean_name(changes["name"])
        if Project.objects.filter(owner=project.owner, name=name).exclude(pk=project.pk).exists():
            raise Conflict(f"You already have a project named {name!r}.",
                           fields={"name": [f"You already have a project named {name!r}."]})
        project.name = name
    if "description" in changes:
        project.description = _clean_description(changes["description"])
    if "tags" in changes:
        project.tags = _clean_tags(changes["tags"])
    if "archived" in changes:
        project.archived = bool(changes["archived"])
    if "fallback_models" in changes:  # checked against the catalog by orchestration.projects.project_update
        project.fallback_models = list(changes["fallback_models"])
    project.save()
    return project
