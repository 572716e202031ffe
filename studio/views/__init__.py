"""The studio's server-rendered pages (see studio/urls.py for the map)."""

from studio.views.account import (
                                  account_page,
                                  provider_key_delete_view,
                                  provider_key_save_view,
                                  token_create,
                                  token_revoke,
)
from studio.views.assets import asset_page
from studio.views.dashboard import dashboard
from studio.views.generate import estimate, generate
from studio.views.generations import generation_cancel_view, generation_page
from studio.views.projects import project_delete_view, project_edit, project_page
from studio.views.uploads import asset_upload

__all__ = ["account_page", "provider_key_delete_view", "provider_key_save_view", "token_create", "token_revoke", "asset_page", "dashboard", "generation_cancel_view",
           "generation_page", "asset_upload", "estimate", "generate", "project_delete_view", "project_edit",
           "project_page"]
