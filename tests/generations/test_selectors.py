from __future__ import annotations

from typing import Any

import pytest

from generations.models import Generation, Status
from generations.selectors import generation_recent_for_project
from generations.services import generation_create
from orchestration.projects import project_list_with_stats_for_user

pytestmark = pytest.mark.django_db


def test_the_job_list_keeps_an_old_active_job_beyond_the_newest_few(owner: Any, project: Any, catalog: None) -> None:
    jobs = [generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": str(i)})
            for i in range(6)]
    Generation.objects.exclude(pk=jobs[0].pk).update(status=Status.SUCCEEDED)
    shown = generation_recent_for_project(owner, project, limit=3)
    assert [g.pk for g in shown] == [jobs[0].pk, jobs[5].pk, jobs[4].pk, jobs[3].pk]


def test_project_cards_count_assets_and_jobs_without_multiplying(owner: Any, project: Any, catalog: None,
                                                                  django_assert_num_queries: Any) -> None:
    for i in range(3):
        generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": str(i)})
    with django_assert_num_queries(1):
        cards = list(project_list_with_stats_for_user(owner))
    assert [(c.generation_count, c.asset_count, c.cover_id) for c in cards] == [(3, 0, None)]
