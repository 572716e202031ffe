"""Offline sketch: a procedural picture drawn from the prompt's words and the seed. Not AI.

Over 400 lines because it is one engine: the three styles share the palette, motif and pass code.

Everything is derived from a SHA-256 of the parameters, fed to `random.Random`, so the same prompt,
seed and settings give byte-identical PNGs (on any worker with the same numpy and Pillow). The prompt
steers the picture in two ways: a few colour and mood words ("ocean", "sunset", "night", "pastel")
pick the palette, and every other word becomes a motif (a shape, a colour and a place on the canvas)
that recurs across the passes. Case and punctuation do not matter; the words do.

`steps` is the number of refinement passes: each pass adds a finer layer of detail (smaller shapes,
more wave ridges, smaller mosaic tiles), so more steps give a busier, more detailed picture.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import os
import random
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from generations.providers.base import Output
from generations.providers.local import (
    Report,
    check_canceled,
    enum_param,
    int_param,
    invalid,
)

# Seconds each pass waits, so progress is visible in the UI even though a pass takes milliseconds.
# Tests set it to 0 (monkeypatch here, or LOCAL_SKETCH_STEP_SECONDS for a worker subprocess).
STEP_SECONDS = float(os.environ.get("LOCAL_SKETCH_STEP_SECONDS", "") or 0.05)

STYLES = ["shapes", "waves", "mosaic"]
MAX_SEED = 2**31 - 1
MAX_MOTIFS = 12
SUPERSAMPLE = 3

RGB = tuple[int, int, int]

# Hues (0-1) for words that name a colour or evoke one; the first such word in the prompt wins.
COLOR_WORDS: dict[str, float] = {
    "red": 0.0, "crimson": 0.97, "scarlet": 0.99, "ruby": 0.96, "fire": 0.03, "lava": 0.02,
    "orange": 0.07, "sunset": 0.05, "autumn": 0.07, "copper": 0.06, "amber": 0.1, "gold": 0.12,
    "golden": 0.12, "desert": 0.1, "sand": 0.11, "yellow": 0.15, "lemon": 0.16, "sun": 0.13,
    "lime": 0.25, "green": 0.33, "forest": 0.34, "leaf": 0.3, "jungle": 0.36, "moss": 0.27,
    "emerald": 0.4, "mint": 0.43, "teal": 0.48, "cyan": 0.5, "turquoise": 0.47, "ice": 0.53,
    "ocean": 0.55, "sea": 0.55, "water": 0.56, "sky": 0.57, "blue": 0.61, "navy": 0.63,
    "indigo": 0.69, "violet": 0.75, "purple": 0.78, "lavender": 0.74, "magenta": 0.85,
    "pink": 0.92, "rose": 0.95, "cherry": 0.97,
}
DARK_WORDS = {"night", "dark", "midnight", "shadow", "shadows", "noir", "space", "cave", "moon", "storm"}
LIGHT_WORDS = {"bright", "sunny", "day", "light", "pastel", "morning", "snow", "snowy", "cloud", "clouds",
               "soft", "sunlit", "white"}
VIVID_WORDS = {"neon", "vivid", "electric", "psychedelic", "candy", "rainbow", "bold"}
MUTED_WORDS = {"grey", "gray", "mono", "monochrome", "faded", "vintage", "dusty", "muted", "fog", "foggy"}
STOPWORDS = {
    "a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "with", "by", "for", "from", "is", "are",
    "it", "its", "as", "into", "over", "under", "very", "some", "this", "that",
}

SHAPE_KINDS = ["circle", "ring", "square", "triangle", "diamond", "hexagon", "blob", "star", "lines"]


def validate(inputs: Mapping[str, Any]) -> dict[str, Any]:
    prompt = inputs.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("prompt is required and must not be blank.")
    if len(prompt) > 2000:
        raise invalid("prompt must be at most 2000 characters.")
    return {
        "prompt": prompt,
        "width": int_param(inputs, "width", default=768, minimum=256, maximum=1536, multiple_of=64),
        "height": int_param(inputs, "height", default=768, minimum=256, maximum=1536, multiple_of=64),
        # The runner always fills the seed in; 0 keeps a direct call deterministic all the same.
        "seed": int_param(inputs, "seed", default=0, minimum=0, maximum=MAX_SEED),
        "steps": int_param(inputs, "steps", default=12, minimum=1, maximum=50),
        "style": enum_param(inputs, "style", STYLES, default="shapes"),
    }


def run(inputs: Mapping[str, Any], report: Report, cancel: threading.Event) -> list[Output]:
    params = validate(inputs)
    width, height, seed, steps, style = (params[k] for k in ("width", "height", "seed", "steps", "style"))
    report(1, f"sketching {width}×{height}, style {style}, seed {seed}, {steps} steps")
    png = render(params, report=report, cancel=cancel)
    return [Output(kind="image", mime="image/png", data=png, filename=f"sketch-{seed}.png",
                   metadata={"width": width, "height": height, "seed": seed, "style": style,
                             "steps": steps})]


def _no_report(progress: int, log: str | None = None) -> None:
    pass


def render(params: Mapping[str, Any], *, report: Report | None = None,
           cancel: threading.Event | None = None) -> bytes:
    """Draw the picture and return PNG bytes. `params` must already be validated."""
    cancel = cancel or threading.Event()
    report = report or _no_report
    width, height, steps = params["width"], params["height"], params["steps"]
    words = _words(params["prompt"])
    rng = random.Random(_digest("scene", params["style"], params["seed"], " ".join(words)))
    palette = _palette(words, params["seed"])
    motifs = _motifs(words, params["seed"], palette)
    canvas = _background(width, height, palette, rng)

    painters: dict[str, type[_Painter]] = {
        "shapes": _ShapesPainter, "waves": _WavesPainter, "mosaic": _MosaicPainter}
    painter = painters[params["style"]](canvas, palette, motifs, rng, steps)

    for step in range(steps):
        check_canceled(cancel)
        painter.draw_pass(step)
        # wait() rather than sleep() so a cancel interrupts the pause at once.
        if STEP_SECONDS > 0:
            cancel.wait(STEP_SECONDS)
        report(2 + (93 * (step + 1)) // steps, f"step {step + 1}/{steps}")
    check_canceled(cancel)

    image = _vignette(painter.result())
    buffer = io.BytesIO()
    # Pillow writes no timestamps into PNGs, so identical pixels give identical bytes.
    image.save(buffer, format="PNG", compress_level=6)
    report(100, None)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------
# Words, palette, motifs

def _digest(*parts: object) -> int:
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _words(prompt: str) -> list[str]:
    words = re.findall(r"\w+", prompt.lower())
    # A prompt of only punctuation or emoji still deserves its own picture.
    return words or [prompt.strip().lower()]


def _rgb(hue: float, lightness: float, saturation: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, min(1.0, max(0.0, lightness)), min(1.0, max(0.0, saturation)))
    return round(r * 255), round(g * 255), round(b * 255)


@dataclass(frozen=True)
class Palette:
    sky_top: RGB
    sky_bottom: RGB
    glow: RGB
    accents: tuple[RGB, ...]
    ink: RGB
    dark: bool


def _palette(words: list[str], seed: int) -> Palette:
    """The prompt sets the mood (hue, light or dark, saturation); the seed nudges it."""
    rng = random.Random(_digest("palette", seed, " ".join(words)))
    hue = next((COLOR_WORDS[w] for w in words if w in COLOR_WORDS), None)
    if hue is None:
        hue = (_digest("hue", " ".join(sorted(set(words)))) % 360) / 360.0
    hue = (hue + rng.uniform(-0.04, 0.04)) % 1.0
    wordset = set(words)
    if wordset & DARK_WORDS:
        dark = True
    elif wordset & LIGHT_WORDS:
        dark = False
    else:
        dark = rng.random() < 0.5
    saturation = 0.62 + rng.uniform(-0.08, 0.12)
    if wordset & VIVID_WORDS:
        saturation = 0.95
    if wordset & MUTED_WORDS:
        saturation = 0.18

    # Harmony schemes as hue offsets around the base hue.
    scheme = rng.choice([(0.0, 0.08, -0.08, 0.5), (0.0, 0.33, 0.66, 0.08), (0.0, 0.42, 0.58, -0.06),
                         (0.0, 0.06, 0.12, -0.06), (0.0, 0.5, 0.04, 0.54)])
    if dark:
        sky_top = _rgb(hue + 0.03, 0.08, saturation * 0.7)
        sky_bottom = _rgb(hue - 0.04, 0.24, saturation * 0.8)
        glow = _rgb(hue + scheme[1], 0.55, saturation)
        ink = _rgb(hue, 0.04, 0.3)
        accent_l = [0.62, 0.5, 0.72, 0.42]
    else:
        sky_top = _rgb(hue - 0.03, 0.88, saturation * 0.6)
        sky_bottom = _rgb(hue + 0.04, 0.72, saturation * 0.7)
        glow = _rgb(hue + scheme[1], 0.95, saturation)
        ink = _rgb(hue + 0.5, 0.16, 0.35)
        accent_l = [0.5, 0.38, 0.62, 0.3]
    accents = tuple(_rgb(hue + offset + rng.uniform(-0.02, 0.02), lightness + rng.uniform(-0.05, 0.05),
                         saturation + rng.uniform(-0.1, 0.05))
                    for offset, lightness in zip(scheme, accent_l, strict=True))
    return Palette(sky_top, sky_bottom, glow, accents, ink, dark)


@dataclass(frozen=True)
class Motif:
    """One prompt word's contribution: where it lives, what it looks like and its colours."""

    word: str
    x: float  # anchor, as a fraction of the width
    y: float
    shape: str
    color: RGB
    second: RGB
    frequency: float  # wave cycles across the picture, for the waves style
    weight: float


def _motifs(words: list[str], seed: int, palette: Palette) -> list[Motif]:
    content = [w for w in dict.fromkeys(words) if w not in STOPWORDS] or list(dict.fromkeys(words))
    motifs = []
    for index, word in enumerate(content[:MAX_MOTIFS]):
        rng = random.Random(_digest("motif", seed, word))
        color = palette.accents[(_digest("color", word) + index) % len(palette.accents)]
        second = palette.accents[(_digest("second", word) + index + 1) % len(palette.accents)]
        motifs.append(Motif(
            word=word, x=rng.uniform(0.15, 0.85), y=rng.uniform(0.15, 0.85),
            shape=SHAPE_KINDS[_digest("shape", word) % len(SHAPE_KINDS)], color=color, second=second,
            frequency=0.6 + (_digest("freq", word) % 400) / 100.0,
            # Earlier words are usually the subject; give them more of the picture.
            weight=1.0 / (1.0 + 0.25 * index)))
    return motifs


# ---------------------------------------------------------------------------------------------------
# Drawing helpers

def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _background(width: int, height: int, palette: Palette, rng: random.Random) -> np.ndarray:
    scale = float(min(width, height))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs /= scale
    ys /= scale
    angle = math.pi / 2 + rng.uniform(-0.6, 0.6)
    t = (xs - width / scale / 2) * math.cos(angle) + (ys - height / scale / 2) * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    t = t * t * (3 - 2 * t)
    top = np.array(palette.sky_top, np.float32)
    bottom = np.array(palette.sky_bottom, np.float32)
    canvas = top + (bottom - top) * t[..., None]
    gx, gy = rng.uniform(0.2, 0.8) * width / scale, rng.uniform(0.15, 0.6) * height / scale
    radius = rng.uniform(0.25, 0.45)
    glow = np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * radius * radius)) * rng.uniform(0.35, 0.6)
    canvas += (np.array(palette.glow, np.float32) - canvas) * glow[..., None]
    return canvas


def _vignette(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    height, width = pixels.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xs / width - 0.5) ** 2 + (ys / height - 0.5) ** 2) * 2.0
    pixels *= (1.0 - 0.28 * r2 ** 1.3)[..., None]
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


def _shape_polygons(kind: str, radius: float, angle: float, rng: random.Random
                    ) -> list[tuple[list[tuple[float, float]], bool]]:
    """Polygons around (0, 0) as (points, filled); unfilled polygons are cut out of earlier ones."""

    def regular(n: int, r: float, phase: float = 0.0) -> list[tuple[float, float]]:
        return [(r * math.cos(angle + phase + 2 * math.pi * i / n),
                 r * math.sin(angle + phase + 2 * math.pi * i / n)) for i in range(n)]

    if kind == "circle":
        return [(regular(96, radius), True)]
    if kind == "ring":
        return [(regular(96, radius), True), (regular(96, radius * rng.uniform(0.55, 0.8)), False)]
    if kind == "square":
        return [(regular(4, radius, math.pi / 4), True)]
    if kind == "triangle":
        return [(regular(3, radius, -math.pi / 2), True)]
    if kind == "diamond":
        points = regular(4, radius)
        return [([(x * 0.6, y) if i % 2 else (x, y * 0.6) for i, (x, y) in enumerate(points)], True)]
    if kind == "hexagon":
        return [(regular(6, radius), True)]
    if kind == "star":
        spikes = rng.choice([5, 6, 7, 8])
        inner = rng.uniform(0.4, 0.6)
        return [([(radius * (1 if i % 2 == 0 else inner) * math.cos(angle + math.pi * i / spikes),
                   radius * (1 if i % 2 == 0 else inner) * math.sin(angle + math.pi * i / spikes))
                  for i in range(2 * spikes)], True)]
    if kind == "blob":
        harmonics = [(rng.randint(2, 5), rng.uniform(0.05, 0.16), rng.uniform(0, 2 * math.pi))
                     for _ in range(3)]
        points = []
        for i in range(120):
            theta = 2 * math.pi * i / 120
            r = radius * (0.8 + sum(a * math.sin(k * theta + p) for k, a, p in harmonics))
            points.append((r * math.cos(theta + angle), r * math.sin(theta + angle)))
        return [(points, True)]
    # "lines": a bundle of parallel bars, like hatching.
    count = rng.randint(3, 6)
    bars = []
    thickness = radius / (count * 2.2)
    dx, dy = math.cos(angle), math.sin(angle)
    for i in range(count):
        offset = (i - (count - 1) / 2) * radius * 1.6 / count
        cx, cy = -dy * offset, dx * offset
        half = radius * rng.uniform(0.6, 1.0)
        bars.append(([(cx - dx * half - dy * thickness, cy - dy * half + dx * thickness),
                      (cx + dx * half - dy * thickness, cy + dy * half + dx * thickness),
                      (cx + dx * half + dy * thickness, cy + dy * half - dx * thickness),
                      (cx - dx * half + dy * thickness, cy - dy * half - dx * thickness)], True))
    return bars


def _stamp(canvas: Image.Image, kind: str, cx: float, cy: float, radius: float, angle: float,
           colors: tuple[RGB, RGB], alpha: float, shadow: RGB | None, rng: random.Random) -> None:
    """Draw one anti-aliased shape with a two-colour gradient fill (and a soft shadow) onto `canvas`."""
    polygons = _shape_polygons(kind, radius, angle, rng)
    side = int(radius * 2.2) + 4
    mask_big = Image.new("L", (side * SUPERSAMPLE, side * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(mask_big)
    centre = side * SUPERSAMPLE / 2
    for points, filled in polygons:
        draw.polygon([(centre + x * SUPERSAMPLE, centre + y * SUPERSAMPLE) for x, y in points],
                     fill=255 if filled else 0)
    # Drawing big and box-filtering down is the anti-aliasing ImageDraw does not do itself.
    mask = mask_big.resize((side, side), Image.Resampling.BOX)
    x0, y0 = round(cx - side / 2), round(cy - side / 2)

    if shadow is not None:
        blur = max(1.0, radius * 0.08)
        shadow_mask = mask.filter(ImageFilter.GaussianBlur(blur)).point(lambda v: round(v * 0.35))
        offset = round(radius * 0.06) + 1
        canvas.paste(shadow, (x0 + offset, y0 + offset, x0 + offset + side, y0 + offset + side), shadow_mask)

    gradient_angle = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-1.0, 1.0, side, dtype=np.float32)
    t = (ramp[None, :] * math.cos(gradient_angle) + ramp[:, None] * math.sin(gradient_angle)) * 0.5 + 0.5
    t = np.clip(t, 0.0, 1.0)[..., None]
    first, second = np.array(colors[0], np.float32), np.array(colors[1], np.float32)
    fill = Image.fromarray((first + (second - first) * t + 0.5).astype(np.uint8), "RGB")
    if alpha < 1.0:
        mask = mask.point(lambda v: round(v * alpha))
    canvas.paste(fill, (x0, y0), mask)


class _Painter(ABC):
    def __init__(self, canvas: np.ndarray, palette: Palette, motifs: list[Motif], rng: random.Random,
                 steps: int) -> None:
        self.height, self.width = canvas.shape[:2]
        self.palette = palette
        self.motifs = motifs
        self.rng = rng
        self.steps = steps

    def _pick_motif(self) -> Motif:
        return self.rng.choices(self.motifs, weights=[m.weight for m in self.motifs])[0]

    @abstractmethod
    def draw_pass(self, step: int) -> None:
        """Add one refinement pass; passes run in order 0..steps-1."""

    @abstractmethod
    def result(self) -> Image.Image:
        """The finished picture, before the vignette."""


class _ShapesPainter(_Painter):
    """Layered shapes: big forms first, each pass adds more, smaller ones clustered around each motif."""

    def __init__(self, canvas: np.ndarray, palette: Palette, motifs: list[Motif], rng: random.Random,
                 steps: int) -> None:
        super().__init__(canvas, palette, motifs, rng, steps)
        self.image = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "RGB")
        # Shrink so that the last pass lands on fine detail whatever the number of steps.
        self.shrink = 0.12 ** (1.0 / max(1, steps - 1)) if steps > 1 else 1.0

    def draw_pass(self, step: int) -> None:
        rng = self.rng
        unit = min(self.width, self.height)
        scale = self.shrink ** step
        count = min(32, 2 + round(len(self.motifs) * 0.4 + step * 0.9 * 12 / self.steps))
        for _ in range(count):
            motif = self._pick_motif()
            spread = 0.12 + 0.28 * (1.0 - scale)
            x = min(1.08, max(-0.08, rng.gauss(motif.x, spread))) * self.width
            y = min(1.08, max(-0.08, rng.gauss(motif.y, spread))) * self.height
            radius = unit * 0.32 * scale * rng.uniform(0.55, 1.15) * (0.7 + 0.3 * motif.weight)
            radius = max(radius, unit * 0.012)
            kind = motif.shape if rng.random() < 0.75 else rng.choice(SHAPE_KINDS)
            colors = (motif.color, motif.second) if rng.random() < 0.5 else (motif.second, motif.color)
            if rng.random() < 0.15:
                colors = (self.palette.glow, colors[0])
            alpha = rng.uniform(0.55, 0.95) if scale > 0.3 else rng.uniform(0.75, 1.0)
            shadow = self.palette.ink if radius > unit * 0.05 else None
            _stamp(self.image, kind, x, y, radius, rng.uniform(0, 2 * math.pi), colors, alpha, shadow, rng)

    def result(self) -> Image.Image:
        return self.image


class _WavesPainter(_Painter):
    """Layered ridges from far to near, shaped by the motif words' frequencies (a landscape of waves)."""

    def __init__(self, canvas: np.ndarray, palette: Palette, motifs: list[Motif], rng: random.Random,
                 steps: int) -> None:
        super().__init__(canvas, palette, motifs, rng, steps)
        self.canvas = canvas
        self.ridges = min(40, max(3, steps))
        self.xs = np.arange(self.width, dtype=np.float32) / self.width

    def _celestial(self) -> None:
        rng = self.rng
        unit = min(self.width, self.height)
        cx, cy = rng.uniform(0.2, 0.8) * self.width, rng.uniform(0.12, 0.35) * self.height
        radius = unit * rng.uniform(0.06, 0.12)
        ys, xs = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        distance = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        disc = np.clip(radius - distance + 0.5, 0.0, 1.0)
        halo = np.exp(-((distance / (radius * 3.0)) ** 2)) * 0.35
        colour = np.array(_mix(self.palette.glow, (255, 255, 255), 0.35), np.float32)
        amount = np.maximum(disc, halo)[..., None]
        self.canvas += (colour - self.canvas) * amount

    def _ridge(self, index: int) -> None:
        rng = self.rng
        depth = index / max(1, self.ridges - 1)  # 0 = far, 1 = near
        baseline = self.height * (0.38 + 0.5 * depth)
        amplitude = self.height * (0.025 + 0.05 * depth) * rng.uniform(0.7, 1.3)
        curve = np.zeros(self.width, np.float32)
        chosen = rng.sample(self.motifs, k=min(3, len(self.motifs)))
        for weight, motif in enumerate(chosen, start=1):
            phase = rng.uniform(0, 2 * math.pi)
            curve += np.sin(2 * math.pi * motif.frequency * self.xs * (0.6 + depth) + phase) / weight
        curve += 0.25 * np.sin(2 * math.pi * rng.uniform(6, 14) * self.xs + rng.uniform(0, 6.3))
        curve = baseline + amplitude * curve / 1.6

        motif = chosen[0]
        # Far ridges fade into the sky (aerial perspective); near ones are saturated and dark.
        haze = _mix(self.palette.sky_bottom, self.palette.glow, 0.3)
        near = motif.color if index % 2 else motif.second
        top_colour = np.array(_mix(haze, near, 0.25 + 0.75 * depth), np.float32)
        bottom_colour = np.array(_mix(_mix(haze, near, 0.25 + 0.75 * depth), self.palette.ink,
                                      0.35 + 0.3 * depth), np.float32)
        crest_colour = np.array(_mix(self.palette.glow, (255, 255, 255), 0.4), np.float32)

        top = max(0, int(curve.min()) - 2)
        rows = np.arange(top, self.height, dtype=np.float32)[:, None]
        below = rows - curve[None, :]
        coverage = np.clip(below + 0.5, 0.0, 1.0)
        shade = np.clip(below / max(1.0, self.height - baseline + amplitude), 0.0, 1.0)[..., None]
        colour = top_colour + (bottom_colour - top_colour) * shade
        region = self.canvas[top:]
        region += (colour - region) * coverage[..., None]
        line_width = max(1.0, self.height / 500) * (0.6 + depth)
        crest = np.clip(1.0 - np.abs(below - line_width) / line_width, 0.0, 1.0) * (0.25 + 0.35 * depth)
        region += (crest_colour - region) * crest[..., None]

    def draw_pass(self, step: int) -> None:
        if step == 0:
            self._celestial()
        first = step * self.ridges // self.steps
        last = (step + 1) * self.ridges // self.steps
        for index in range(first, last):
            self._ridge(index)

    def result(self) -> Image.Image:
        return Image.fromarray(np.clip(self.canvas + 0.5, 0, 255).astype(np.uint8), "RGB")


class _MosaicPainter(_Painter):
    """Low-poly tiles: a jittered triangle mesh, split finer each pass, densest around the motifs."""

    def __init__(self, canvas: np.ndarray, palette: Palette, motifs: list[Motif], rng: random.Random,
                 steps: int) -> None:
        super().__init__(canvas, palette, motifs, rng, steps)
        self.canvas = canvas
        self.min_area = self.width * self.height / 1800.0
        self.triangles: list[tuple[tuple[float, float], ...]] = []
        columns = rng.randint(3, 5)
        rows = max(2, round(columns * self.height / self.width))

        def jitter(index: int, count: int) -> float:
            # Border vertices stay on the border so the tiles always cover the whole canvas.
            return index + (rng.uniform(-0.3, 0.3) if 0 < index < count else 0.0)

        grid = [[(jitter(c, columns) * self.width / columns, jitter(r, rows) * self.height / rows)
                 for c in range(columns + 1)] for r in range(rows + 1)]
        for r in range(rows):
            for c in range(columns):
                a, b, d, e = grid[r][c], grid[r][c + 1], grid[r + 1][c], grid[r + 1][c + 1]
                if rng.random() < 0.5:
                    self.triangles += [(a, b, e), (a, e, d)]
                else:
                    self.triangles += [(a, b, d), (b, e, d)]

    def _density(self, x: float, y: float) -> float:
        best = 0.0
        for motif in self.motifs:
            d2 = ((x / self.width - motif.x) ** 2 + (y / self.height - motif.y) ** 2) / 0.05
            best = max(best, motif.weight * math.exp(-d2))
        return best

    def draw_pass(self, step: int) -> None:
        rng = self.rng
        refined: list[tuple[tuple[float, float], ...]] = []
        for triangle in self.triangles:
            (ax, ay), (bx, by), (cx, cy) = triangle
            area = abs((bx - ax) * (cy - ay) - (cx - ax) * (by - ay)) / 2
            centre = ((ax + bx + cx) / 3, (ay + by + cy) / 3)
            chance = 0.3 + 0.65 * self._density(*centre)
            if area < self.min_area or len(self.triangles) + len(refined) > 9000 or rng.random() > chance:
                refined.append(triangle)
                continue
            # Split the longest edge near its middle, so tiles stay reasonably fat.
            edges = sorted(range(3), key=lambda i: -math.dist(triangle[i], triangle[(i + 1) % 3]))
            i = edges[0]
            p, q, other = triangle[i], triangle[(i + 1) % 3], triangle[(i + 2) % 3]
            t = rng.uniform(0.4, 0.6)
            middle = (p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)
            refined += [(p, middle, other), (middle, q, other)]
        self.triangles = refined

    def result(self) -> Image.Image:
        rng = self.rng
        factor = 2  # drawn at twice the size and reduced, for smooth tile edges
        image = Image.new("RGB", (self.width * factor, self.height * factor), self.palette.ink)
        draw = ImageDraw.Draw(image)
        grout = max(1, round(min(self.width, self.height) / 768)) * factor
        for triangle in self.triangles:
            cx = sum(p[0] for p in triangle) / 3
            cy = sum(p[1] for p in triangle) / 3
            sample = self.canvas[min(self.height - 1, int(cy)), min(self.width - 1, int(cx))]
            base = (int(sample[0]), int(sample[1]), int(sample[2]))
            density = self._density(cx, cy)
            nearest = max(self.motifs, key=lambda m: m.weight * math.exp(
                -((cx / self.width - m.x) ** 2 + (cy / self.height - m.y) ** 2) / 0.05))
            tint = nearest.color if rng.random() < 0.6 else nearest.second
            colour = _mix(base, tint, min(0.9, 0.15 + density * 0.9))
            light = rng.uniform(-0.14, 0.14)
            colour = _mix(colour, (255, 255, 255) if light > 0 else (0, 0, 0), abs(light))
            draw.polygon([(x * factor, y * factor) for x, y in triangle], fill=colour,
                         outline=_mix(colour, self.palette.ink, 0.55), width=grout)
        return image.resize((self.width, self.height), Image.Resampling.LANCZOS)
