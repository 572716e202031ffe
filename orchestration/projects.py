"""A project with what is in it: its deletion (files, assets and jobs go with it) and the projects list
with each one's counts and cover. Both read or change assets and generations as well as the project, so
they live above those apps (docs/ARCHITECTURE.md, "Layers"); projects.services keeps the project's own
fields."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from assets.library.selectors import asset_list_for_user, ready_thumb_small
from assets.storage import asset_files_delete_for_project
from core.errors import Conflict
from generations.selectors import fallback_models_clean, generation_active_exists, generation_list_for_user
from projects import services as project_services
from projects.models import Project
from projects.selectors import project_list_for_user

if TYPE_CHECKING:
    from accounts.models import User


@transaction.atomic
def project_update(*, project: Project, **changes: Any) -> Project:
    """`projects.services.project_update`, with `fallback_models` checked against the catalog. The
    project's own fields are checked first, as before fallbacks were a separate step, so a request with
    several mistakes is answered with the same one; the transaction undoes them if the fallbacks fail."""
    fallbacks_given = "fallback_models" in changes
    fallbacks = changes.pop("fallback_models", None)
    project = project_services.project_update(project=project, **changes)
    if fallbacks_given:
        project = project_services.project_update(project=project, fallback_models=fallback_models_clean(fallbacks))
    return project


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete a project with its assets and history. Refused while a job in it is still running,
    because its credits are on hold and the worker would write into a project that no longer exists."""
    if generation_active_exists(project=project):
        raise Conflict("This project has generations still running; cancel them or wait for them first.",
                       code="project_busy")
    asset_files_delete_for_project(project=project)
    project.delete()


def _count_per_project(qs: QuerySet[Any]) -> Coalesce:
    return Coalesce(Subquery(qs.filter(project=OuterRef("pk")).order_by().values("project")
                             .annotate(n=Count("pk")).values("n")[:1], output_field=IntegerField()), Value(0))


def project_list_with_stats_for_user(user: User) -> QuerySet[Project]:
    """The user's projects with asset and job counts, the newest image's id (`cover_id`) and that
    image's small WebP thumbnail once made (`cover_thumb`, the stored name, else ""), in one query:
    correlated subqueries rather than joins, so counting assets does not multiply rows by jobs."""
    images = asset_list_for_user(user).filter(project=OuterRef("pk"), kind="image").order_by("-created_at", "-id")
    return project_list_for_user(user).annotate(
        asset_count=_count_per_project(asset_list_for_user(user)),
        generation_count=_count_per_project(generation_list_for_user(user)),
        cover_id=Subquery(images.values("pk")[:1]),
        cover_thumb=Subquery(images.annotate(thumb=ready_thumb_small()).values("thumb")[:1]),
    )
