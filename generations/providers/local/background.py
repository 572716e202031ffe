"""Remove the background behind people with MediaPipe selfie segmentation, offline.

The segmentation model ships inside the mediapipe wheel, so this needs no download and no key. It is a
person segmenter: it finds people (faces, hair, bodies), not arbitrary objects, and says so in the
catalog. The model looks at a 256×256 (or 256×144 for "landscape") version of the picture anyway, so we
segment a copy at most SEGMENT_LONG_EDGE px long and scale the mask back up, which keeps memory flat
for large photos without losing anything the model could have seen.

The segmenter always answers with a mask, person or not: on a flat colour it is empty, but on a sketch,
a logo or a product shot it often marks blobs with high confidence (measured on 69 `local/sketch`
outputs: blobs over up to 62% of the picture at a mean confidence up to 0.997, as sure as it is of a
real person). Mask coverage and confidence therefore cannot tell "no one here" from a person, so the
job also looks for a face with MediaPipe's BlazeFace detector (short- and full-range models, both in the
same wheel) and keeps only a face scoring at least FACE_MIN_SCORE whose box lies mostly
(FACE_MIN_OVERLAP) inside the cut-out. Measured: a photo of a person (matplotlib's grace_hopper.jpg)
scaled to 20% of a busy frame or 35% of a plain one, cropped, darkened, blurred, greyscale or mirrored
scores 0.72-0.96; the best face on any of the 69 sketches scored 0.68 (on a blob), a gift-box clip-art
0.56. Without such a face the job fails with `no_person_found` (final; the runner releases the hold,
so nothing is charged) instead of delivering random blobs. The cost of the rule: a person seen from
behind, or small in a wide frame (the same photo at 20% of a plain grey frame scored 0.66), is not
found either, and the message says so.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyvips

from generations.providers.base import AssetInput, Output, ProviderError
from generations.providers.local import (
    Report,
    asset_param,
    check_canceled,
    enum_param,
    int_param,
    number_param,
    vips_failure,
)
from generations.providers.local.upscale import decode, output_stem

MODELS = {"general": 0, "landscape": 1}
MAX_INPUT_PIXELS = 64_000_000
SEGMENT_LONG_EDGE = 1024
FACE_MIN_SCORE = 0.7
FACE_MIN_OVERLAP = 0.5
NO_PERSON_MESSAGE = ("No person found in this picture. Background removal cuts out people and finds them "
                     "by their face, so it needs a person facing the camera (a sketch, a logo or an object "
                     "has no one to cut out; someone seen from behind or very small is missed). "
                     "Nothing was charged.")


def validate(inputs: Mapping[str, Any]) -> dict[str, Any]:
    image = asset_param(inputs, "image")
    width, height = getattr(image, "width", None), getattr(image, "height", None)
    if width and height:
        _check_size(width, height)
    return {
        "image": image,
        "model": enum_param(inputs, "model", list(MODELS), default="general"),
        "threshold": number_param(inputs, "threshold", default=0.5, minimum=0.0, maximum=1.0),
        "feather": int_param(inputs, "feather", default=2, minimum=0, maximum=20),
    }


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_INPUT_PIXELS:
        raise ProviderError(
            f"The image is {width}×{height} ({width * height / 1e6:.0f} megapixels); background removal "
            f"takes images up to {MAX_INPUT_PIXELS // 1_000_000} megapixels.",
            code="too_large", retryable=False)


def _split_rgb_alpha(image: pyvips.Image) -> tuple[pyvips.Image, pyvips.Image | None]:
    """8-bit sRGB colour bands, plus the image's own alpha (8-bit) when it has one."""
    if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
        # colourspace() also brings 16-bit and float images down to 8-bit sRGB.
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    alpha = None
    if image.hasalpha():
        alpha = image[image.bands - 1]
        image = image.extract_band(0, n=image.bands - 1)
    if image.bands == 1:
        image = image.bandjoin([image, image])
    elif image.bands > 3:
        image = image.extract_band(0, n=3)
    return image.copy(interpretation="srgb"), alpha


def segment(rgb: np.ndarray, model: str) -> np.ndarray:
    """Person probability, float32 HxW in 0..1, for an HxWx3 uint8 RGB array."""
    # mediapipe takes seconds to import and most workers never remove a background.
    from mediapipe.python.solutions import selfie_segmentation  # heavy optional import: see above

    with selfie_segmentation.SelfieSegmentation(model_selection=MODELS[model]) as segmenter:
        result = segmenter.process(np.ascontiguousarray(rgb))
    mask = result.segmentation_mask
    if mask is None:
        return np.zeros(rgb.shape[:2], np.float32)
    return np.clip(np.asarray(mask, np.float32), 0.0, 1.0)


def person_score(rgb: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """The best score of a face the detector finds inside the person mask (0.0 when there is none).
    `mask` is `segment`'s, the same size as `rgb`; a face box counts when at least FACE_MIN_OVERLAP of
    it is kept at the job's threshold."""
    from mediapipe.python.solutions import face_detection  # heavy optional import, as in segment()

    height, width = mask.shape
    kept = mask >= threshold if threshold > 0 else np.ones_like(mask, dtype=bool)
    best = 0.0
    pixels = np.ascontiguousarray(rgb)
    for model_selection in (0, 1):  # 0: faces within ~2 m of the camera, 1: up to ~5 m (smaller faces)
        with face_detection.FaceDetection(model_selection=model_selection,
                                          min_detection_confidence=FACE_MIN_SCORE) as detector:
            result = detector.process(pixels)
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            x0, y0 = max(0, int(box.xmin * width)), max(0, int(box.ymin * height))
            x1 = min(width, int((box.xmin + box.width) * width))
            y1 = min(height, int((box.ymin + box.height) * height))
            if x1 <= x0 or y1 <= y0:
                continue
            if float(kept[y0:y1, x0:x1].mean()) >= FACE_MIN_OVERLAP:
                best = max(best, float(detection.score[0]))
    return best


def alpha_from_mask(mask: np.ndarray, size: tuple[int, int], threshold: float, feather: int) -> np.ndarray:
    """Scale a probability mask to `size` (width, height), cut it at `threshold`, soften the edge."""
    import cv2  # heavy optional import (OpenCV, through mediapipe): only this engine uses it

    width, height = size
    # uint8 from here on: a float mask at 64 megapixels would be a quarter of a gigabyte.
    small = np.round(mask * 255.0).astype(np.uint8)
    full = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    cut = round(threshold * 255)
    alpha = np.where(full >= cut, np.uint8(255), np.uint8(0)) if cut > 0 else np.full_like(full, 255)
    if feather > 0:
        # sigma = feather / 2 puts ~95% of the ramp within `feather` px either side of the edge.
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=feather / 2.0, borderType=cv2.BORDER_REPLICATE)
    return alpha


def run(inputs: Mapping[str, Any], report: Report, cancel: threading.Event) -> list[Output]:
    params = validate(inputs)
    asset: AssetInput = params["image"]

    report(2, f"reading {getattr(asset, 'name', '') or 'image'}")
    data = asset.read()
    check_canceled(cancel)
    image = decode(data, "The input")
    _check_size(image.width, image.height)
    width, height = image.width, image.height
    rgb, own_alpha = _split_rgb_alpha(image)
    report(10, f"input {width}×{height}")

    shrink = min(1.0, SEGMENT_LONG_EDGE / max(width, height))
    preview = rgb.resize(shrink, kernel="linear") if shrink < 1.0 else rgb
    if own_alpha is not None:
        # Transparent areas carry arbitrary colour; show the model what a viewer sees (white behind).
        preview_alpha = own_alpha.resize(shrink, kernel="linear") if shrink < 1.0 else own_alpha
        preview = preview.bandjoin(preview_alpha).flatten(background=[255, 255, 255]).cast("uchar")
    try:
        # The first full decode happens here, so a truncated or corrupt file fails here.
        pixels = preview.numpy()
    except pyvips.Error as exc:
        raise vips_failure(exc, "The input") from exc
    check_canceled(cancel)

    report(20, f"segmenting people (MediaPipe selfie segmentation, {params['model']} model)")
    mask = segment(pixels, params["model"])
    check_canceled(cancel)
    face_score = person_score(pixels, mask, params["threshold"])
    if face_score < FACE_MIN_SCORE:
        raise ProviderError(NO_PERSON_MESSAGE, code="no_person_found", retryable=False)
    report(60, f"found a person (face score {face_score:.2f}); building the alpha channel")

    alpha = alpha_from_mask(mask, (width, height), params["threshold"], params["feather"])
    alpha_image = pyvips.Image.new_from_array(alpha)
    if own_alpha is not None:
        # Keep whatever the picture already had transparent.
        alpha_image = (alpha_image.cast("float") * own_alpha / 255.0).cast("uchar")
    foreground_fraction = float(alpha_image.avg()) / 255.0
    check_canceled(cancel)

    report(75, f"foreground covers {foreground_fraction:.0%} of the picture; encoding PNG")
    # Colour under fully transparent pixels is invisible; zeroing it makes the PNG much smaller and
    # does not ship the removed background along inside the file.
    cutout = (alpha_image == 0).ifthenelse([0, 0, 0, 0], rgb.bandjoin(alpha_image))
    try:
        png = cutout.copy(interpretation="srgb").pngsave_buffer(compression=6)
    except pyvips.Error as exc:
        raise vips_failure(exc, "The input") from exc
    report(100, f"done: {width}×{height} PNG with transparency, {len(png) // 1024} KB")
    return [Output(kind="image", mime="image/png", data=png, filename=f"{output_stem(asset)}-cutout.png",
                   metadata={"foreground_fraction": round(foreground_fraction, 4),
                             "face_score": round(face_score, 2), "width": width,
                             "height": height, "model": params["model"]})]
