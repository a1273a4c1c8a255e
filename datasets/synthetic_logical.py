"""Logical-anomaly scenes of the built-in ``synthetic`` dataset (MVTec LOCO style).

A scene is a parametric description (parts, positions, colours) drawn over a fixed backdrop, lighting
field and sensor noise. A logical anomaly edits the description (a part missing or extra, colours
that do not belong together, a wrong fill level) and redraws it over the same backdrop and noise, so
every local patch still looks like some patch of a normal image; only the composition is wrong.
The mask is exactly the set of pixels whose value changed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from .synthetic_draw import Rng, lighting, sensor_noise, smooth_backdrop


@cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def _disc(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = _grid(size)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@dataclass
class Scene:
    """A scene description plus the fixed layers it is drawn on; ``draw`` maps it to a uint8 image."""

    backdrop: np.ndarray  # float (H, W, 3)
    light: np.ndarray  # float (H, W) multiplicative lighting
    noise: np.ndarray  # float (H, W, 3) sensor noise
    parts: dict = field(default_factory=dict)
    painter: Callable[[Scene], np.ndarray] | None = None

    def edited(self, **parts: object) -> Scene:
        """A copy with some parts replaced (the backdrop, lighting and noise stay the same)."""
        return dataclasses.replace(self, parts={**self.parts, **parts})

    def compose(self) -> np.ndarray:
        assert self.painter is not None
        canvas = self.painter(self) * self.light[..., None] + self.noise
        return np.clip(canvas, 0, 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------------------ pushpins
PIN_ROWS, PIN_COLS = 2, 4


def _pin_cells(size: int, off: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(top, left, bottom, right) of each compartment, with the tray shifted by ``off``."""
    margin, k = 14 * size / 256, size / 256
    h, w = (size - 2 * margin) / PIN_ROWS, (size - 2 * margin) / PIN_COLS
    cells = []
    for r in range(PIN_ROWS):
        for c in range(PIN_COLS):
            top, left = margin + r * h + off[0], margin + c * w + off[1]
            cells.append((top + 4 * k, left + 4 * k, top + h - 4 * k, left + w - 4 * k))
    return cells


def _pin_position(rng: Rng, cell: tuple[float, float, float, float], r: float) -> tuple[float, float]:
    top, left, bottom, right = cell
    return float(rng.uniform(top + r + 3, bottom - r - 3)), float(rng.uniform(left + r + 3, right - r - 3))


def _paint_pushpins(scene: Scene) -> np.ndarray:
    size = scene.backdrop.shape[0]
    out = scene.backdrop.copy()
    k = size / 256
    yy, xx = _grid(size)
    walls = np.ones((size, size), dtype=bool)
    for top, left, bottom, right in scene.parts["cells"]:
        walls &= ~((yy >= top) & (yy < bottom) & (xx >= left) & (xx < right))
    out[walls] *= 0.72
    r = scene.parts["radius"]
    for cy, cx, colour in scene.parts["pins"]:
        out[_disc(size, cy + 2.5 * k, cx + 2.5 * k, r + 1.5 * k)] *= 0.62  # shadow
        head = _disc(size, cy, cx, r)
        d = np.hypot(yy[head] - cy + 0.35 * r, xx[head] - cx + 0.35 * r) / (1.6 * r)
        out[head] = np.asarray(colour)[None] * (1.15 - 0.45 * np.clip(d, 0, 1))[:, None]
    return out


def render_pushpins(rng: Rng, size: int) -> Scene:
    """A tray of 2 x 4 compartments holding exactly one yellow pin each, at a random spot inside it."""
    backdrop = smooth_backdrop(rng, size, (196, 188, 170), amp=6)
    off = rng.uniform(-5, 5, 2) * size / 256
    cells = _pin_cells(size, off)
    radius = 9.0 * size / 256
    colour = tuple(np.array([232.0, 186.0, 42.0]) * (1 + rng.uniform(-0.04, 0.04, 3)))
    pins = [(*_pin_position(rng, cell, radius), colour) for cell in cells]
    return Scene(
        backdrop,
        lighting(rng, size),
        sensor_noise(rng, size),
        {"cells": cells, "pins": pins, "radius": radius},
        _paint_pushpins,
    )


def missing_pin(rng: Rng, scene: Scene) -> Scene:
    """Logical: one compartment is empty."""
    pins = list(scene.parts["pins"])
    pins.pop(int(rng.integers(len(pins))))
    return scene.edited(pins=pins)


def extra_pin(rng: Rng, scene: Scene) -> Scene:
    """Logical: one compartment holds a second pin (placed clear of the first)."""
    pins, cells, r = list(scene.parts["pins"]), scene.parts["cells"], scene.parts["radius"]
    i = int(rng.integers(len(cells)))
    cy, cx, colour = pins[i]
    for _ in range(200):
        y, x = _pin_position(rng, cells[i], r)
        if math.hypot(y - cy, x - cx) > 2 * r + 5:
            break
    pins.insert(i + 1, (y, x, colour))
    return scene.edited(pins=pins)


# -------------------------------------------------------------------------------------- juice bottle
#: Each juice goes with its own label: (juice colour, label fruit colour, fruit shape).
JUICES = {
    "orange": ((236, 132, 28), (244, 150, 30), "round"),
    "cherry": ((128, 18, 36), (196, 20, 44), "pair"),
    "banana": ((232, 212, 120), (246, 222, 52), "long"),
}


def _fruit(size: int, shape: str, cy: float, cx: float) -> np.ndarray:
    k = size / 256
    yy, xx = _grid(size)
    if shape == "round":
        return _disc(size, cy, cx, 15 * k)
    if shape == "pair":
        return _disc(size, cy + 4 * k, cx - 8 * k, 9 * k) | _disc(size, cy + 4 * k, cx + 8 * k, 9 * k)
    return ((yy - cy) / (7 * k)) ** 2 + ((xx - cx) / (20 * k)) ** 2 <= 1  # long


def _paint_bottle(scene: Scene) -> np.ndarray:
    size = scene.backdrop.shape[0]
    k = size / 256
    p = scene.parts
    yy, xx = _grid(size)
    cx, top = p["cx"], p["top"]
    out = scene.backdrop.copy()
    body = (np.abs(xx - cx) <= 46 * k) & (yy >= top + 40 * k) & (yy <= top + 196 * k)
    neck = (np.abs(xx - cx) <= 17 * k) & (yy >= top + 10 * k) & (yy < top + 40 * k)
    cap = (np.abs(xx - cx) <= 20 * k) & (yy >= top) & (yy < top + 12 * k)
    glass = body | neck
    across = np.clip(np.abs(xx - cx) / (47 * k), 0, 1)
    shade = (0.8 + 0.25 * np.sqrt(1 - across**2))[..., None]
    out[glass] = (0.75 * scene.backdrop + 48)[glass]  # empty glass: the backdrop seen through it, lighter
    juice_colour, _, _ = JUICES[p["juice"]]
    filled = body & (yy >= p["level"])
    out[filled] = (np.asarray(juice_colour, dtype=np.float64)[None, None] * shade)[filled]
    out[cap] = (40, 44, 52)
    label = (np.abs(xx - cx) <= 40 * k) & (np.abs(yy - (top + 140 * k)) <= 30 * k)
    out[label] = (238, 236, 228)
    _, fruit_colour, shape = JUICES[p["label"]]
    out[_fruit(size, shape, top + 140 * k, cx)] = fruit_colour
    return out


def render_juice_bottle(rng: Rng, size: int) -> Scene:
    """A juice bottle whose label shows the fruit of the juice inside, filled to just below the neck."""
    k = size / 256
    juice = list(JUICES)[int(rng.integers(len(JUICES)))]
    top = (28 + rng.uniform(-4, 4)) * k
    parts = {
        "cx": size / 2 + rng.uniform(-10, 10) * k,
        "top": top,
        "juice": juice,
        "label": juice,
        "level": top + (52 + rng.uniform(-3, 3)) * k,
    }
    backdrop = smooth_backdrop(rng, size, (150, 166, 178), amp=8)
    return Scene(backdrop, lighting(rng, size), sensor_noise(rng, size), parts, _paint_bottle)


def wrong_label(rng: Rng, scene: Scene) -> Scene:
    """Logical: the label shows another fruit than the juice (both appear in normal images)."""
    others = [j for j in JUICES if j != scene.parts["juice"]]
    return scene.edited(label=others[int(rng.integers(len(others)))])


def wrong_fill(rng: Rng, scene: Scene) -> Scene:
    """Logical: the bottle is filled too low (still above the label)."""
    k = scene.backdrop.shape[0] / 256
    return scene.edited(level=scene.parts["level"] + rng.uniform(24, 44) * k)


# -------------------------------------------------------------------------------------------- cable
#: Insulation colours of the three wires, clockwise; every cable has exactly one of each in this order.
WIRES = ((46, 150, 70), (40, 86, 190), (120, 80, 50))


def _paint_cable(scene: Scene) -> np.ndarray:
    size = scene.backdrop.shape[0]
    k = size / 256
    p = scene.parts
    cy, cx = p["centre"]
    out = scene.backdrop.copy()
    yy, xx = _grid(size)
    rho = np.hypot(yy - cy, xx - cx)
    sheath = rho <= 100 * k
    out[sheath] = np.array([70.0, 72, 76])[None] * (0.85 + 0.25 * (1 - rho[sheath] / (100 * k)))[:, None]
    for i, colour in enumerate(p["colours"]):
        a = p["angle"] + 2 * math.pi * i / 3
        wy, wx = cy + 48 * k * math.sin(a), cx + 48 * k * math.cos(a)
        ins = _disc(size, wy, wx, 34 * k)
        out[ins] = colour
        core = _disc(size, wy, wx, 15 * k)
        out[core] = (196, 128, 70)  # copper
        strands = core & (np.mod(np.hypot(yy - wy, xx - wx), 5 * k) < 1.4 * k)
        out[strands] = (150, 92, 48)
    return out


def render_cable(rng: Rng, size: int) -> Scene:
    """Cross-section of a three-wire cable (green, blue, brown clockwise), turned to any angle."""
    k = size / 256
    parts = {
        "centre": (size / 2 + rng.uniform(-6, 6) * k, size / 2 + rng.uniform(-6, 6) * k),
        "angle": rng.uniform(0, 2 * math.pi),
        "colours": WIRES,
    }
    backdrop = smooth_backdrop(rng, size, (210, 210, 204), amp=5)
    return Scene(backdrop, lighting(rng, size), sensor_noise(rng, size), parts, _paint_cable)


def cable_swap(rng: Rng, scene: Scene) -> Scene:
    """Logical: one wire has the insulation colour of another (two of one colour, one missing)."""
    colours = list(scene.parts["colours"])
    i = int(rng.integers(3))
    colours[i] = colours[(i + 1 + int(rng.integers(2))) % 3]
    return scene.edited(colours=tuple(colours))


def wrong_order(rng: Rng, scene: Scene) -> Scene:
    """Logical: all three colours present, but two exchanged (counter-clockwise order)."""
    colours = list(scene.parts["colours"])
    i = int(rng.integers(3))
    j = (i + 1) % 3
    colours[i], colours[j] = colours[j], colours[i]
    return scene.edited(colours=tuple(colours))


SCENES: dict[str, Callable[[Rng, int], Scene]] = {
    "pushpins": render_pushpins,
    "juice_bottle": render_juice_bottle,
    "cable": render_cable,
}

LOGICAL_DEFECTS: dict[str, Callable[[Rng, Scene], Scene]] = {
    "missing_pin": missing_pin,
    "extra_pin": extra_pin,
    "wrong_label": wrong_label,
    "wrong_fill": wrong_fill,
    "cable_swap": cable_swap,
    "wrong_order": wrong_order,
}
