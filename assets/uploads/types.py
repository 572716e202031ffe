"""What the upload checks share: the refusal they raise, the result they fill in, and where a file's
bytes are on disk (inspection and probe both read it; a module of its own so neither imports the other)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any

from core.errors import ServiceError


class RefusedFile(ServiceError):
    """A file we will not store, with a reason a person can act on. `code` is the API's error code:
    unsupported_file, unsafe_file, file_too_large, image_too_large, corrupt_file, empty_file (HTTP 400)."""

    def __init__(self, message: str, *, code: str = "unsupported_file") -> None:
        super().__init__(message, code=code)


@dataclass
class Inspection:
    kind: str
    mime: str
    extension: str
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # stored under Asset.metadata["media"]


def local_path(fh: Any) -> str | None:
    """A path on disk holding exactly the file's bytes, when there is one: an upload streamed to a
    temporary file, or a file opened from disk. Never the upload's own name (`cat.png` could name some
    other file in the working directory)."""
    if hasattr(fh, "temporary_file_path"):
        return fh.temporary_file_path()
    raw = getattr(fh, "file", fh)
    if isinstance(raw, io.BufferedReader | io.FileIO) and isinstance(raw.name, str) and os.path.isabs(raw.name):
        return raw.name
    return None
