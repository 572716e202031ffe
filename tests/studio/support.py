"""Helpers the page tests share (tests/studio, tests/projects): a small PNG and an image asset made from it."""

from __future__ import annotations

import io

from PIL import Image

from assets.models import Asset
from assets.services import asset_create_from_bytes
from projects.models import Project


def png_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buf, "PNG")
    return buf.getvalue()


def image_asset(project: Project, name: str = "photo.png") -> Asset:
    return asset_create_from_bytes(project=project, data=png_bytes(), name=name)
