"""An upload handler that refuses a file while it is still arriving.

Django writes an upload larger than FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file in 64 KB chunks
(TemporaryFileUploadHandler); this is that handler plus two early checks:

- the type, from the first 8 KB (`assets.uploads.inspection.classify`, the same function the service uses):
  an .exe or an HTML page stops being written after its first chunk;
- the size limit of that kind (a 3 GB "video" is cut at 2 GB; an image at 50 MB): nothing beyond the
  limit is written.

A refused file becomes a `RefusedUpload` in request.FILES, an empty placeholder carrying the refusal,
so the view and the API serializer see a file as usual and `asset_create` raises the refusal with its
code (file_too_large, unsupported_file): one path for every refusal, and the same 400 body. The rest
of the refused file's bytes are read from the connection and dropped (so the client gets the answer
instead of a reset connection), never stored; a front proxy's body-size cap bounds how much is read.

Requests small enough for MemoryFileUploadHandler never reach this handler; they are checked by the
service after parsing, with the same rules.
"""

from __future__ import annotations

import io
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from assets.uploads.inspection import HEAD_SIZE, RefusedFile, classify, largest_size_limit, size_limit, too_large


class RefusedUpload(UploadedFile):
    """What request.FILES holds for a refused file: no content, the size that arrived, the refusal."""

    def __init__(self, *, name: str, content_type: str, size: int, refusal: RefusedFile) -> None:
        super().__init__(file=io.BytesIO(b""), name=name, content_type=content_type, size=max(size, 1))
        self.upload_refusal = refusal


class AssetUploadHandler(TemporaryFileUploadHandler):
    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.head = b""
        self.limit = largest_size_limit()
        self.kind: str | None = None
        self.refusal: RefusedFile | None = None

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self.refusal is not None:
            return None  # dropped: read from the connection, never written
        if self.kind is None and len(self.head) < HEAD_SIZE:
            self.head += raw_data[: HEAD_SIZE - len(self.head)]
            if len(self.head) >= HEAD_SIZE:
                self._classify()
        if self.refusal is None and start + len(raw_data) > self.limit:
            self._refuse(too_large(self.kind, start + len(raw_data), at_least=True) if self.kind
                         else RefusedFile("This file is larger than any file the studio accepts "
                                          f"({self.limit // (1024 * 1024)} MB).", code="file_too_large"))
        if self.refusal is not None:
            return None
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size: int) -> UploadedFile | None:
        if self.refusal is None and self.kind is None:
            self._classify()  # a file smaller than the head sample
        if self.refusal is not None:
            return RefusedUpload(name=self.file_name, content_type=self.content_type, size=file_size,
                                 refusal=self.refusal)
        return super().file_complete(file_size)

    def _classify(self) -> None:
        try:
            inspection = classify(self.head, self.file_name or "")
        except RefusedFile as exc:
            self._refuse(exc)
            return
        self.kind = inspection.kind
        self.limit = size_limit(inspection.kind)

    def _refuse(self, refusal: RefusedFile) -> None:
        self.refusal = refusal
        # What was written so far is deleted now (NamedTemporaryFile removes itself on close).
        self.file.close()
