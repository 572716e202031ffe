from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from core.errors import Conflict, InvalidRequest
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


def _clean_fallback_ids(ids: Any) -> list[str]:
    from generations.models import AIModel

    ids = [str(i) for i in dict.fromkeys(ids or [])][:5]
    known = set(AIModel.objects.filter(pk__in=ids).values_list("id", flat=True))
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InvalidRequest(f"Unknown model {unknown[0]!r}.", fields={"fallback_models": [f"Unknown model {i!r}." for i in unknown]})
    return ids


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
    if "fallback_models" in changes:
        project.fallback_models = _clean_fallback_ids(changes["fallback_models"])
    project.save()
    return project


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete a project with its assets and history. Refused while a job in it is still running,
    because its credits are on hold and the worker would write into a project that no longer exists."""
    from generations.selectors import generation_active_exists

    if generation_active_exists(project=project):
        raise Conflict("This project has generations still running; cancel them or wait for them first.",
                       code="project_busy")
    from assets.services import asset_files_delete_for_project

    asset_files_delete_for_project(project=project)
    project.delete()
