"""Image grids of ground truth and reconstructions, drawn with Pillow only (no plotting library).

:func:`image_grid` lays out rows of ``(N, C, H, W)`` image tensors in ``[0, 1]``: each tile is
upscaled by an integer factor with nearest-neighbour sampling (so pixels stay visible; by default to
at least :data:`MIN_TILE` = 128 px a side), optionally titled per row and captioned per tile in
Pillow's built-in default font at :data:`TITLE_SIZE` / :data:`CAPTION_SIZE` px (no font files, works
offline; Pillow < 10.1 falls back to its small bitmap font). Rows wider than ``max_cols`` tiles wrap
into several groups, each group repeating every row.

Layout (all in pixels; ``T`` is ``line_height(TITLE_SIZE)``, ``L`` is ``line_height(CAPTION_SIZE)``)::

    PAD | tile | PAD | tile | PAD ...            width  = PAD + cols * (tile_w + PAD)
    row r: [title line T] tile [its caption lines, L each] PAD
    groups of rows are separated by an extra GROUP_GAP

Each row is as tall as its own captions need (a one-line caption row is shorter than a two-line one).

:func:`reconstruction_png` draws a result's ground truth above its matched reconstruction.

>>> img = image_grid([torch.zeros(3, 1, 8, 8)], scale=2)
>>> img.mode, img.size == (PAD + 3 * (16 + PAD), PAD + 16 + PAD)
('RGB', True)
>>> image_grid([torch.zeros(1, 3, 32, 32)]).size == (PAD + 128 + PAD, PAD + 128 + PAD)
True
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from gradinv.errors import ConfigError, DataError
from gradinv.report.format import format_metric

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.experiment import ExperimentResult

__all__ = [
    "CAPTION_SIZE",
    "GROUP_GAP",
    "MAX_COLS",
    "MIN_TILE",
    "PAD",
    "TITLE_SIZE",
    "aligned_images",
    "auto_scale",
    "class_name",
    "image_grid",
    "line_height",
    "reconstruction_captions",
    "reconstruction_image",
    "reconstruction_png",
    "to_uint8",
]

logger = logging.getLogger(__name__)

PAD = 8
GROUP_GAP = 12
MIN_TILE = 128
MAX_COLS = 8
#: font sizes (px) of row titles and tile captions
TITLE_SIZE = 16
CAPTION_SIZE = 14
_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)
_TITLE = (40, 40, 120)
_PLACEHOLDER = 0.85  # gray level of a tile with no matched reconstruction

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


@functools.lru_cache(maxsize=8)
def _font(size: int = CAPTION_SIZE) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def line_height(size: int = CAPTION_SIZE) -> int:
    """Height of one text line in the default font at ``size`` px, with 4 px spacing."""
    font = _font(size)
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return int(ascent + descent) + 4
    return int(font.getbbox("Ag|y")[3]) + 4  # pragma: no cover - bitmap font


def auto_scale(height: int, width: int, *, min_tile: int = MIN_TILE) -> int:
    """The smallest integer factor that makes both sides of an image at least ``min_tile`` pixels.

    >>> auto_scale(32, 32), auto_scale(28, 28), auto_scale(16, 16), auto_scale(224, 224)
    (4, 5, 8, 1)
    """
    return max(1, math.ceil(min_tile / max(1, min(height, width))))


def to_uint8(images: Tensor) -> np.ndarray:
    """``(N, C, H, W)`` floats in ``[0, 1]`` (clamped) -> ``(N, H, W, 3)`` uint8; grayscale -> RGB."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        got = f"shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise DataError(
            f"Expected images of shape (N, C, H, W) with C = 1 or 3, but got {got}. "
            "Draw other channel counts one channel at a time."
        )
    x = images.detach().cpu().double().numpy()
    x = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x)


def _fit(text: str, width: int, font: Font) -> str:
    """``text`` cut (with a trailing '..') so it fits ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    for end in range(len(text) - 1, 0, -1):
        cut = text[:end] + ".."
        if font.getlength(cut) <= width:
            return cut
    return ""


@dataclass(frozen=True)
class _Layout:
    tile_w: int
    tile_h: int
    cols: int
    groups: int
    title_h: int
    caption_h: tuple[int, ...]  # per row

    def row_h(self, row: int) -> int:
        return self.title_h + self.tile_h + self.caption_h[row] + PAD

    @property
    def group_h(self) -> int:
        return sum(self.row_h(r) for r in range(len(self.caption_h)))

    def size(self) -> tuple[int, int]:
        width = PAD + self.cols * (self.tile_w + PAD)
        height = PAD + self.groups * self.group_h + (self.groups - 1) * GROUP_GAP
        return width, height

    def origin(self, group: int, row: int) -> int:
        """Top y of ``row`` in ``group``."""
        return PAD + group * (self.group_h + GROUP_GAP) + sum(self.row_h(r) for r in range(row))


def _check_rows(rows: Sequence[Tensor]) -> tuple[int, int]:
    if len(rows) == 0:
        raise DataError("Expected at least one row of images, but got none.")
    shapes = set()
    for i, r in enumerate(rows):
        if not isinstance(r, Tensor) or r.ndim != 4 or r.shape[1] not in (1, 3):
            got = f"shape {tuple(r.shape)}" if isinstance(r, Tensor) else type(r).__name__
            raise DataError(f"Expected row {i} as images (N, C, H, W) with C = 1 or 3, but got {got}.")
        shapes.add((int(r.shape[2]), int(r.shape[3])))
    if len(shapes) > 1:
        raise DataError(
            f"Expected every row to hold images of one size (H, W), but got {sorted(shapes)}. "
            "Resize them first."
        )
    return shapes.pop()


def image_grid(
    rows: Sequence[Tensor],
    *,
    row_titles: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    scale: int | None = None,
    max_cols: int = MAX_COLS,
) -> Image.Image:
    """Draw ``rows`` of images as one RGB grid.

    Args:
        rows: ``(N_r, C, H, W)`` tensors in ``[0, 1]`` (C = 1 or 3), all of the same H and W.
        row_titles: one title per row, drawn above the row's tiles.
        captions: per row, one caption per tile (``"\\n"`` separates lines), drawn under the tile.
        scale: integer nearest-neighbour upscaling factor; default :func:`auto_scale` (tiles >= 128 px).
        max_cols: tiles per line; wider rows wrap into groups that repeat every row.
    """
    h, w = _check_rows(rows)
    if row_titles is not None and len(row_titles) != len(rows):
        raise ConfigError(f"Expected one row title per row ({len(rows)}), but got {len(row_titles)}.")
    if captions is not None:
        if len(captions) != len(rows):
            raise ConfigError(f"Expected one caption list per row ({len(rows)}), but got {len(captions)}.")
        for i, (row, caps) in enumerate(zip(rows, captions)):
            if len(caps) != row.shape[0]:
                raise ConfigError(
                    f"Expected one caption per image in row {i} ({row.shape[0]}), but got {len(caps)}."
                )
    if scale is not None and (not isinstance(scale, int) or scale < 1):
        raise ConfigError(f"Expected `scale` to be an int >= 1, but got {scale!r}. Use None for automatic.")
    if not isinstance(max_cols, int) or max_cols < 1:
        raise ConfigError(f"Expected `max_cols` to be an int >= 1, but got {max_cols!r}.")
    s = scale or auto_scale(h, w)
    font, title_font = _font(CAPTION_SIZE), _font(TITLE_SIZE)
    lh = line_height(CAPTION_SIZE)
    longest = max(int(r.shape[0]) for r in rows)
    n_lines = [max((len(c.split("\n")) for c in caps), default=0) for caps in captions or [()] * len(rows)]
    layout = _Layout(
        tile_w=w * s,
        tile_h=h * s,
        cols=max(1, min(max_cols, longest)),
        groups=max(1, math.ceil(longest / max_cols)),
        title_h=line_height(TITLE_SIZE) if row_titles is not None else 0,
        caption_h=tuple(lh * n for n in n_lines),
    )
    canvas = Image.new("RGB", layout.size(), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for r, images in enumerate(rows):
        tiles = to_uint8(images)
        for j in range(tiles.shape[0]):
            g, col = divmod(j, layout.cols)
            y0 = layout.origin(g, r)
            x0 = PAD + col * (layout.tile_w + PAD)
            if row_titles is not None and col == 0:
                width = layout.cols * (layout.tile_w + PAD) - PAD
                draw.text((x0, y0), _fit(row_titles[r], width, title_font), fill=_TITLE, font=title_font)
            tile = Image.fromarray(tiles[j]).resize((layout.tile_w, layout.tile_h), Image.Resampling.NEAREST)
            canvas.paste(tile, (x0, y0 + layout.title_h))
            if captions is not None:
                y = y0 + layout.title_h + layout.tile_h
                for k, line in enumerate(captions[r][j].split("\n")):
                    draw.text((x0, y + k * lh), _fit(line, layout.tile_w, font), fill=_TEXT, font=font)
    return canvas


def class_name(label: int, class_names: Sequence[str]) -> str:
    """The name of class ``label``, or its id when no name is known.

    >>> class_name(1, ["cat", "dog"]), class_name(7, ["cat", "dog"])
    ('dog', '7')
    """
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def _format_psnr(v: float) -> str:
    return f"PSNR {format_metric('psnr', v)} dB"


def reconstruction_captions(result: ExperimentResult) -> tuple[list[str], list[str]]:
    """Captions of the ground-truth row and the reconstruction row, one per ground-truth image.

    Truth: the class name. Reconstruction: the recovered label's class name with ``[ok]``/``[x]`` against
    the truth label of its matched image (``label ?`` when the attack infers none), and the PSNR;
    ``unmatched`` where no reconstruction was matched to that ground-truth image."""
    names = result.truth.class_names
    true_labels = [int(v) for v in result.truth.labels.tolist()]
    ev = result.evaluation
    psnr = ev.metrics["psnr"].per_image if "psnr" in ev.metrics else ()
    rec_labels = ev.matched_labels.tolist() if ev.matched_labels is not None else None
    bottom = ["unmatched"] * len(true_labels)
    for k, t in enumerate(ev.matching.truth_index.tolist()):
        if rec_labels is None:
            first = "label ?"
        else:
            lbl = int(rec_labels[k])
            first = f"{class_name(lbl, names)} [{'ok' if lbl == true_labels[t] else 'x'}]"
        second = _format_psnr(psnr[k]) if k < len(psnr) else ""
        bottom[t] = f"{first}\n{second}"
    top = [class_name(t, names) for t in true_labels]
    return top, bottom


def aligned_images(result: ExperimentResult) -> tuple[Tensor, Tensor]:
    """The ground truth and, at each ground-truth image's position, its matched reconstruction (a
    gray tile where none was matched); both ``(N, C, H, W)`` on the CPU, in ``[0, 1]``."""
    truth = result.truth.images.detach().float().cpu().clamp(0, 1)
    ev = result.evaluation
    bottom = torch.full_like(truth, _PLACEHOLDER)
    bottom[ev.matching.truth_index] = ev.matched_images.detach().float().cpu().clamp(0, 1)
    return truth, bottom


def reconstruction_image(result: ExperimentResult, *, max_cols: int = MAX_COLS) -> Image.Image:
    """Ground truth (top) above the matched reconstruction (bottom), captioned (see
    :func:`reconstruction_captions`). A ground-truth image without a match gets a gray tile."""
    truth, bottom = aligned_images(result)
    top_captions, bottom_captions = reconstruction_captions(result)
    return image_grid(
        [truth, bottom],
        row_titles=["ground truth", "reconstruction"],
        captions=[top_captions, bottom_captions],
        max_cols=max_cols,
    )


def reconstruction_png(result: ExperimentResult, path: str | Path) -> Path:
    """Write :func:`reconstruction_image` of ``result`` as a PNG; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    reconstruction_image(result).save(p, format="PNG")
    logger.info("wrote reconstruction grid %s", p)
    return p
