"""Drawing helpers of the built-in ``synthetic`` dataset: textures, drawn objects and defects.

Every function takes a ``numpy.random.Generator`` and is a pure function of it, so one seed gives
the same pixels on every run. Images are ``uint8`` arrays (H, W, 3); masks are ``bool`` (H, W).
Objects are rendered as layers (background, foreground, alpha, sensor noise) so that a "missing"
defect can put back the exact background behind an erased piece.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

Rng = np.random.Generator

#: Saturated colours for stains; one far from the local colour is chosen (visible contrast). No greys:
#: white or black stains on grey gravel hide among its bright and shadowed stones.
PALETTE = np.array(
    [
        [220, 40, 30],
        [30, 60, 220],
        [240, 200, 20],
        [20, 180, 60],
        [200, 40, 200],
        [20, 200, 220],
    ],
    dtype=np.float32,
)


# --------------------------------------------------------------------------------------------- noise
def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: Rng) -> np.ndarray:
    """Gradient (Perlin) noise of ``shape`` with ``res`` lattice cells per axis, values in about [-1, 1].

    Hand-written: numpy, scipy and scikit-image ship no Perlin generator, and the ``noise`` package
    needs a C build; these few lines of numpy keep the dataset reproducible from one seed.
    """
    h, w = shape
    ry, rx = res
    grads = rng.normal(size=(ry + 1, rx + 1, 2))
    grads /= np.linalg.norm(grads, axis=-1, keepdims=True)
    y = np.arange(h, dtype=np.float64) * ry / h
    x = np.arange(w, dtype=np.float64) * rx / w
    yi, xi = np.floor(y).astype(int), np.floor(x).astype(int)
    yf, xf = (y - yi)[:, None], (x - xi)[None, :]

    gy, gx = grads[..., 0], grads[..., 1]

    def corner(dy: int, dx: int) -> np.ndarray:
        rows, cols = yi + dy, xi + dx
        return gy.take(rows, 0).take(cols, 1) * (yf - dy) + gx.take(rows, 0).take(cols, 1) * (xf - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6 - 15) + 10)

    ty, tx = fade(yf), fade(xf)
    c00, c01, c10, c11 = corner(0, 0), corner(0, 1), corner(1, 0), corner(1, 1)
    top = c00 + tx * (c01 - c00)
    bottom = c10 + tx * (c11 - c10)
    return (top + ty * (bottom - top)) * math.sqrt(2)


def fractal_noise(shape: tuple[int, int], res: int, rng: Rng, octaves: int = 3) -> np.ndarray:
    """Sum of Perlin octaves (each twice the frequency, half the amplitude), scaled to about [-1, 1]."""
    total = np.zeros(shape)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        total += amp * perlin_noise(shape, (res * 2**o, res * 2**o), rng)
        norm += amp
        amp /= 2
    return total / norm


# ------------------------------------------------------------------------------------------ textures
@dataclass(frozen=True)
class TextureSource:
    """A real photograph bundled with scikit-image, tinted to a colour, and how crops may be turned."""

    loader: str  # name of the skimage.data function (only ones bundled in the wheel, no download)
    tint: tuple[float, float, float]
    rotate: bool  # rot90 keeps the texture plausible (isotropic ones only; bricks stay upright)


TEXTURES: dict[str, TextureSource] = {
    "brick": TextureSource("brick", (1.10, 0.62, 0.50), rotate=False),
    "grass": TextureSource("grass", (0.70, 1.05, 0.45), rotate=True),
    "gravel": TextureSource("gravel", (0.95, 0.92, 0.86), rotate=True),
}


@cache
def texture_photo(name: str) -> np.ndarray:
    """The tinted RGB photograph (uint8) behind texture ``name``."""
    import skimage.data

    src = TEXTURES[name]
    gray = getattr(skimage.data, src.loader)().astype(np.float32)
    return np.clip(gray[..., None] * np.array(src.tint, dtype=np.float32), 0, 255).round().astype(np.uint8)


def texture_crop(name: str, rng: Rng, size: int, crop: int = 192) -> np.ndarray:
    """A random ``crop``-pixel window of the photograph, flipped/rotated, resized to ``size``, jittered."""
    photo = texture_photo(name)
    y, x = (int(v) for v in rng.integers(0, np.array(photo.shape[:2]) - crop + 1))
    patch = photo[y : y + crop, x : x + crop]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if TEXTURES[name].rotate:
        patch = np.rot90(patch, int(rng.integers(4)))
    if rng.random() < 0.5 and TEXTURES[name].rotate:
        patch = patch[::-1]
    img = np.asarray(Image.fromarray(np.ascontiguousarray(patch)).resize((size, size), Image.BILINEAR))
    gain = 1.0 + rng.uniform(-0.04, 0.04)
    return np.clip(img.astype(np.float32) * gain, 0, 255).round().astype(np.uint8)


def render_wood(rng: Rng, size: int) -> np.ndarray:
    """Procedural wood grain: growth rings around a random far-off pith, warped by Perlin noise, with
    fine fibres; ring spacing, knots of the warp and tint vary from image to image."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(-2.5, -1.5) * size, rng.uniform(-0.3, 1.3) * size
    warp = 9.0 * size / 256 * fractal_noise((size, size), 3, rng, octaves=3)
    rings = np.hypot(yy - cy, xx - cx) + warp
    period = rng.uniform(11, 15) * size / 256
    grain = 0.5 + 0.5 * np.sin(2 * math.pi * rings / period)
    fibres = fractal_noise((size, size), 24, rng, octaves=2)
    light = np.array([196.0, 150.0, 100.0]) * (1 + rng.uniform(-0.06, 0.06, 3))
    dark = light * rng.uniform(0.62, 0.7)
    img = light + (dark - light) * (grain**2)[..., None] + 10 * fibres[..., None]
    img *= lighting(rng, size, gain=0.06, slope=0.06)[..., None]
    return np.clip(img + sensor_noise(rng, size, 1.5), 0, 255).round().astype(np.uint8)


#: Textures drawn from noise rather than cropped from a photograph.
PROCEDURAL_TEXTURES: dict[str, Callable[[Rng, int], np.ndarray]] = {"wood": render_wood}


def texture_image(name: str, rng: Rng, size: int) -> np.ndarray:
    """One normal image of texture ``name`` (photograph crop or procedural)."""
    if name in PROCEDURAL_TEXTURES:
        return PROCEDURAL_TEXTURES[name](rng, size)
    return texture_crop(name, rng, size)


# ------------------------------------------------------------------------------------------- objects
@dataclass
class ObjectLayers:
    """A drawn object: float layers composed as ``where(alpha, fg, bg) + noise``."""

    bg: np.ndarray
    fg: np.ndarray
    alpha: np.ndarray
    noise: np.ndarray

    def compose(self, alpha: np.ndarray | None = None) -> np.ndarray:
        """The uint8 image, optionally with another alpha (a piece of the object erased)."""
        a = self.alpha if alpha is None else alpha
        out = np.where(a[..., None], self.fg, self.bg) + self.noise
        return np.clip(out, 0, 255).round().astype(np.uint8)


def smooth_backdrop(rng: Rng, size: int, base: tuple[int, int, int], amp: float) -> np.ndarray:
    """A plain backdrop with slow, faint brightness variation, float (H, W, 3)."""
    shade = 1.0 + amp / 100 * fractal_noise((size, size), 2, rng, octaves=2)
    return np.array(base, dtype=np.float64)[None, None] * shade[..., None]


def lighting(rng: Rng, size: int, gain: float = 0.12, slope: float = 0.10) -> np.ndarray:
    """A multiplicative lighting field (H, W): global gain of +-``gain`` and a linear falloff of up to
    +-``slope`` across the frame in a random direction (normal images are not lit identically)."""
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    ramp = math.cos(angle) * xx + math.sin(angle) * yy
    return (1 + rng.uniform(-gain, gain)) * (1 + 2 * rng.uniform(0, slope) * ramp)


def sensor_noise(rng: Rng, size: int, sigma: float = 2.0) -> np.ndarray:
    """Gaussian sensor noise (H, W, 3)."""
    return rng.normal(0.0, sigma, size=(size, size, 3))


def _lit(rng: Rng, bg: np.ndarray, fg: np.ndarray, alpha: np.ndarray) -> ObjectLayers:
    """Layers under a random lighting field (pose and lighting vary between normal images)."""
    light = lighting(rng, bg.shape[0])[..., None]
    return ObjectLayers(bg * light, fg * light, alpha, sensor_noise(rng, bg.shape[0]))


def _frame(rng: Rng, size: int, angle: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Object-local pixel coordinates (u along the object's axis, v across) for a pose."""
    cy, cx = size / 2 + rng.uniform(-shift, shift, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def _jitter(rng: Rng, colour: tuple[int, int, int], amount: float = 0.05) -> np.ndarray:
    return np.array(colour, dtype=np.float64) * (1 + rng.uniform(-amount, amount, 3))


def render_pill(rng: Rng, size: int) -> ObjectLayers:
    """A two-colour capsule with cylindrical shading and a few printed specks, on a dark backdrop."""
    bg = smooth_backdrop(rng, size, (42, 44, 52), amp=8)
    u, v = _frame(rng, size, rng.uniform(-0.6, 0.6), shift=14)
    half, r = 62 * size / 256 * rng.uniform(0.97, 1.03), 34 * size / 256 * rng.uniform(0.97, 1.03)
    along = np.clip(u, -half, half)
    d = np.hypot(u - along, v)
    alpha = d <= r
    light = 0.55 + 0.45 * np.sqrt(np.clip(1 - (d / r) ** 2, 0, 1))
    left, right = _jitter(rng, (235, 232, 222)), _jitter(rng, (205, 70, 55))
    fg = np.where((u < 0)[..., None], left, right) * light[..., None]
    for _ in range(int(rng.integers(4, 9))):  # specks on the white half, as on real pills
        su, sv = rng.uniform(-half - r * 0.5, -4), rng.uniform(-r * 0.6, r * 0.6)
        fg[np.hypot(u - su, v - sv) < 1.8] *= np.array([0.85, 0.55, 0.5])
    return _lit(rng, bg, fg, alpha)


def render_screw(rng: Rng, size: int) -> ObjectLayers:
    """A metal screw (slotted head, threaded shaft, pointed tip) in any orientation, on a light backdrop."""
    k = size / 256
    bg = smooth_backdrop(rng, size, (205, 205, 198), amp=5)
    u, v = _frame(rng, size, rng.uniform(0, 2 * math.pi), shift=14)
    u, v = u / k, v / k
    head = np.hypot(u + 55, v) <= 21
    shaft = (u >= -40) & (u <= 55) & (np.abs(v) <= 9)
    tip = (u > 55) & (u <= 76) & (np.abs(v) <= 9 * (76 - u) / 21)
    neck = (u >= -55) & (u < -40) & (np.abs(v) <= 12)
    alpha = head | shaft | tip | neck
    metal = _jitter(rng, (150, 152, 158), 0.04)
    across = np.where(head, np.hypot(u + 55, v) / 21, np.clip(np.abs(v) / 12, 0, 1))
    light = 0.55 + 0.45 * np.sqrt(np.clip(1 - across**2, 0, 1))
    thread = (shaft | tip) & (np.mod(u + 0.45 * v, 7.0) < 2.4)
    light = np.where(thread, light * 0.6, light)
    slot = head & (np.abs(v) <= 3) & (u < -40)
    light = np.where(slot, 0.3, light)
    fg = metal[None, None] * light[..., None]
    return _lit(rng, bg, fg, alpha)


def render_bottle_cap(rng: Rng, size: int) -> ObjectLayers:
    """A knurled bottle cap seen from above (rim teeth, a raised ring, a centre disc)."""
    k = size / 256
    bg = smooth_backdrop(rng, size, (96, 112, 128), amp=6)
    u, v = _frame(rng, size, rng.uniform(0, 2 * math.pi), shift=12)
    u, v = u / k, v / k
    rho = np.hypot(u, v)
    teeth = np.mod(np.floor((np.arctan2(v, u) + math.pi) * 48 / (2 * math.pi)), 2)
    alpha = rho <= 86 + 4 * teeth
    base = _jitter(rng, (200, 40, 40), 0.06)
    light = 0.78 + 0.22 * np.clip(1 - rho / 90, 0, 1)
    light = np.where(np.abs(rho - 62) < 4, light * 1.25, light)
    light = np.where(rho > 80, light * 0.75, light)
    light = np.where(rho < 28, light * 0.9, light)
    fg = base[None, None] * light[..., None]
    return _lit(rng, bg, fg, alpha)


OBJECTS: dict[str, Callable[[Rng, int], ObjectLayers]] = {
    "pill": render_pill,
    "screw": render_screw,
    "bottle_cap": render_bottle_cap,
}


# ------------------------------------------------------------------------------------------- defects
def _blob(rng: Rng, size: int, centre: np.ndarray, area: float) -> np.ndarray:
    """An irregular filled blob of about ``area`` pixels: an ellipse with a noisy outline."""
    aspect = rng.uniform(0.5, 2.0)
    a = math.sqrt(area / math.pi * aspect)
    b = area / (math.pi * a)
    angle = rng.uniform(0, math.pi)
    c, s = math.cos(angle), math.sin(angle)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = xx - centre[1], yy - centre[0]
    r = np.hypot((c * dx + s * dy) / a, (-s * dx + c * dy) / b)
    return r < 1 + 0.3 * perlin_noise((size, size), (6, 6), rng)


def _centre(rng: Rng, size: int, where: np.ndarray | None, margin: int = 40) -> np.ndarray:
    """A defect centre: anywhere away from the border, or on a pixel of ``where`` (the object)."""
    if where is None:
        return rng.uniform(margin, size - margin, 2)
    ys, xs = np.nonzero(where)
    i = int(rng.integers(len(ys)))
    return np.array([ys[i], xs[i]], dtype=np.float64)


def _contrast_colour(rng: Rng, img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A palette colour far from the region's mean colour (one of the two farthest, for variety)."""
    mean = img[mask].reshape(-1, 3).mean(axis=0)
    far = np.argsort(-np.linalg.norm(PALETTE - mean, axis=1))[:2]
    return PALETTE[far[int(rng.integers(2))]]


def _area(rng: Rng, size: int) -> float:
    return rng.uniform(0.03, 0.10) * size * size


def _region(
    rng: Rng,
    size: int,
    obj: np.ndarray | None,
    min_frac: float,
    make: Callable[[], np.ndarray],
    max_obj_frac: float = 1.0,
) -> np.ndarray:
    """Draw regions with ``make`` (clipped to the object, if any) until one covers ``min_frac`` of the
    image and at most ``max_obj_frac`` of the object (a defect must be seen, the object still recognised)."""
    for _ in range(100):
        region = make()
        if obj is not None:
            region &= obj
            if region.sum() > max_obj_frac * obj.sum():
                continue
        if region.sum() >= min_frac * size * size:
            return region
    raise RuntimeError("could not place a defect of sufficient size")  # unreachable for the shipped shapes


def blotch(rng: Rng, img: np.ndarray, obj: np.ndarray | None, **_: object) -> tuple[np.ndarray, np.ndarray]:
    """A solid stain of a contrasting colour (70 % opaque) over an irregular blob."""
    size = img.shape[0]
    mask = _region(rng, size, obj, 0.025, lambda: _blob(rng, size, _centre(rng, size, obj), _area(rng, size)))
    colour = _contrast_colour(rng, img, mask)
    out = img.astype(np.float32)
    out[mask] = 0.3 * out[mask] + 0.7 * colour
    return out.round().astype(np.uint8), mask


def perlin(rng: Rng, img: np.ndarray, obj: np.ndarray | None, **_: object) -> tuple[np.ndarray, np.ndarray]:
    """A patchy Perlin-noise blob: marbled colour pattern inside a blob, thresholded noise for its shape."""
    size = img.shape[0]

    def make() -> np.ndarray:
        window = _blob(rng, size, _centre(rng, size, obj), _area(rng, size) * 1.6)
        shape_noise = fractal_noise((size, size), 8, rng, octaves=2)
        return window & (shape_noise > np.quantile(shape_noise[window], 0.35))

    mask = _region(rng, size, obj, 0.025, make)
    colour = _contrast_colour(rng, img, mask)
    marble = np.clip(0.5 + 0.9 * fractal_noise((size, size), 16, rng, octaves=2), 0, 1)[..., None]
    out = img.astype(np.float32)
    pattern = 0.15 * out + 0.85 * (colour * (0.35 + 0.65 * marble))
    out[mask] = pattern[mask]
    return out.round().astype(np.uint8), mask


def scratch(rng: Rng, img: np.ndarray, obj: np.ndarray | None, **_: object) -> tuple[np.ndarray, np.ndarray]:
    """One to three thin curved scratches (polylines 3–5 px wide), very bright or very dark."""
    size = img.shape[0]

    def make() -> np.ndarray:
        canvas = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(1, 4))):
            p = _centre(rng, size, obj)[::-1]  # (x, y)
            heading = rng.uniform(0, 2 * math.pi)
            points = [tuple(p)]
            for _ in range(int(rng.integers(4, 7))):
                heading += rng.uniform(-0.5, 0.5)
                step = rng.uniform(15, 30) * size / 256
                p = p + step * np.array([math.cos(heading), math.sin(heading)])
                points.append(tuple(p))
            draw.line(
                [(float(x), float(y)) for x, y in points],
                fill=255,
                width=int(rng.integers(3, 6)),
                joint="curve",
            )
        return np.asarray(canvas) > 0

    mask = _region(rng, size, obj, 0.006, make)
    mean = img[mask].mean()
    level = 250.0 if mean < 128 else 8.0
    out = img.astype(np.float32)
    out[mask] = 0.1 * out[mask] + 0.9 * level
    return out.round().astype(np.uint8), mask


def faint_stain(
    rng: Rng, img: np.ndarray, obj: np.ndarray | None, **_: object
) -> tuple[np.ndarray, np.ndarray]:
    """Subtle: a low-contrast discolouration (a shift of 10-18 grey levels in one colour direction)
    over an irregular blob, as oil or moisture leaves on real parts."""
    size = img.shape[0]
    mask = _region(
        rng, size, obj, 0.012, lambda: _blob(rng, size, _centre(rng, size, obj), _area(rng, size) * 0.6)
    )
    direction = rng.normal(size=3)
    direction = direction / np.linalg.norm(direction) * np.sign(direction.sum() or 1.0)
    shift = rng.uniform(10, 18) * direction * (1 if img[mask].mean() < 128 else -1)
    out = img.astype(np.float32)
    out[mask] += shift.astype(np.float32)
    return np.clip(out, 0, 255).round().astype(np.uint8), mask


def small_spot(
    rng: Rng, img: np.ndarray, obj: np.ndarray | None, **_: object
) -> tuple[np.ndarray, np.ndarray]:
    """Small: one to two high-contrast specks 3-6 px across (a few pixels at a 224-px evaluation size)."""
    size = img.shape[0]

    def make() -> np.ndarray:
        spots = np.zeros((size, size), dtype=bool)
        for _ in range(int(rng.integers(1, 3))):
            spots |= _blob(rng, size, _centre(rng, size, obj), rng.uniform(7, 28) * (size / 256) ** 2)
        return spots

    mask = _region(rng, size, obj, 0.0001, make)
    level = 245.0 if img[mask].mean() < 128 else 15.0
    out = img.astype(np.float32)
    out[mask] = 0.15 * out[mask] + 0.85 * level
    return out.round().astype(np.uint8), mask


def cut_paste(
    rng: Rng, img: np.ndarray, obj: np.ndarray | None, *, donors: list[str], **_: object
) -> tuple[np.ndarray, np.ndarray]:
    """A patch cut from another texture photograph pasted over a blob (foreign material)."""
    size = img.shape[0]
    mask = _region(rng, size, obj, 0.025, lambda: _blob(rng, size, _centre(rng, size, obj), _area(rng, size)))
    donor = donors[int(rng.integers(len(donors)))]
    patch = texture_crop(donor, rng, size, crop=int(rng.integers(96, 256)))
    out = img.copy()
    out[mask] = patch[mask]
    return out, mask


def missing(
    rng: Rng, img: np.ndarray, obj: np.ndarray | None, *, layers: ObjectLayers, **_: object
) -> tuple[np.ndarray, np.ndarray]:
    """A piece of the object erased down to the backdrop behind it (a broken or missing part)."""
    size = img.shape[0]
    obj_area = float(obj.sum())  # sized relative to the object: a screw is only ~6 % of the image

    def make() -> np.ndarray:
        return _blob(rng, size, _centre(rng, size, obj), rng.uniform(0.25, 0.5) * obj_area)

    mask = _region(rng, size, obj, 0.012, make, max_obj_frac=0.45)
    return layers.compose(layers.alpha & ~mask), mask


DEFECTS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "cut_paste": cut_paste,
    "scratch": scratch,
    "blotch": blotch,
    "perlin": perlin,
    "missing": missing,
    "faint_stain": faint_stain,
    "small_spot": small_spot,
}
