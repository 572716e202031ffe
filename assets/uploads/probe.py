"""Audio and video, probed with PyAV (FFmpeg): the duration, the codecs, the frame size and rate, the
sample rate and channels, and a real decode of the first frame, so a file that merely starts like an
MP4 (or an MP3 that is something else) is refused with the reason.

PyAV reads the upload's temporary file by path, or the file object as a stream: FFmpeg reads the
container's headers (up to its probe size, 5 MB by default) and then only the packets it needs for the
first frame, so a 2 GB video costs no more to probe than a short one.
"""

from __future__ import annotations

from fractions import Fraction
from typing import IO, Any

from assets.models import AssetKind
from assets.uploads.types import Inspection, RefusedFile, local_path

MAX_PACKETS = 600  # demuxed looking for the first decodable frame before giving up


def probe_media(fh: IO[bytes], result: Inspection, *, strict: bool) -> None:
    """Fill `result` from the file's streams. With strict (uploads) a file that is not decodable media
    is refused; otherwise (generated outputs, which are never lost) the failure is only recorded."""
    try:
        _probe(fh, result)
    except RefusedFile as exc:
        if strict:
            raise
        result.metadata = {"probe_error": exc.message}
    finally:
        fh.seek(0)


def _probe(fh: IO[bytes], result: Inspection) -> None:
    import av  # FFmpeg's libraries load on the first audio or video, not at start

    path = local_path(fh)
    fh.seek(0)
    noun = "video" if result.kind == AssetKind.VIDEO else "audio file"
    try:
        container = av.open(path if path is not None else fh, mode="r", metadata_errors="ignore")
    except Exception as exc:  # FFmpeg's error for hostile input can be any of its codes
        raise RefusedFile(f"This {noun} could not be read: {_reason(exc)}", code="corrupt_file") from exc
    try:
        with container:
            _read_streams(container, result, noun)
    except RefusedFile:
        raise
    except Exception as exc:
        raise RefusedFile(f"This {noun} could not be decoded: {_reason(exc)}", code="corrupt_file") from exc


def _read_streams(container: Any, result: Inspection, noun: str) -> None:
    import av  # FFmpeg's libraries load on the first audio or video, not at start

    attached = av.stream.Disposition.attached_pic
    videos = [s for s in container.streams.video if not (s.disposition & attached)]
    audios = list(container.streams.audio)
    if result.kind == AssetKind.VIDEO and not videos and audios:
        # An MP4/MOV/WebM holding only sound is audio (an .m4a saved as .mp4, a WebM voice note).
        result.kind = AssetKind.AUDIO
        result.mime = {"video/webm": "audio/webm"}.get(result.mime, "audio/mp4")
        noun = "audio file"
    primary = videos[0] if result.kind == AssetKind.VIDEO and videos else (audios[0] if audios else None)
    if primary is None:
        raise RefusedFile(f"This {noun} has no {'video' if result.kind == AssetKind.VIDEO else 'audio'} stream.",
                          code="corrupt_file")
    if not _decodes_a_frame(container, primary):
        raise RefusedFile(f"This {noun} has a {primary.codec_context.name} stream, but no frame of it "
                          f"could be decoded.", code="corrupt_file")
    info: dict[str, Any] = {"container": container.format.name.split(",")[0]}
    if container.bit_rate:
        info["bit_rate"] = int(container.bit_rate)
    if videos:
        video = videos[0]
        ctx = video.codec_context
        info["video"] = {"codec": ctx.name, "width": ctx.width, "height": ctx.height,
                         "fps": _rate(video.average_rate or video.guessed_rate)}
        if result.kind == AssetKind.VIDEO:
            result.width, result.height = ctx.width or None, ctx.height or None
    if audios:
        ctx = audios[0].codec_context
        info["audio"] = {"codec": ctx.name, "sample_rate": ctx.sample_rate,
                         "channels": ctx.layout.nb_channels if ctx.layout else None}
    result.duration = _duration(container, primary)
    result.metadata = info


def _decodes_a_frame(container: Any, stream: Any) -> bool:
    packets = 0
    for packet in container.demux(stream):
        packets += 1
        if packets > MAX_PACKETS:
            return False
        for _frame in packet.decode():
            return True
    # End of stream: flush the decoder, which may hold back the only frame of a tiny file.
    for _frame in stream.codec_context.decode(None):
        return True
    return False


def _duration(container: Any, stream: Any) -> float | None:
    import av  # FFmpeg's libraries load on the first audio or video, not at start

    if container.duration and container.duration > 0:
        return round(container.duration / av.time_base, 3)
    if stream.duration and stream.time_base:
        return round(float(stream.duration * stream.time_base), 3)
    return None


def _rate(rate: Fraction | None) -> float | None:
    return round(float(rate), 3) if rate else None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
    return text.split(":", 1)[0].strip().rstrip(".") + "."
