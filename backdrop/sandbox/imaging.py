"""The sandbox's picture composer: cut the subject out with a colour matte, put it on a backdrop.

`compose(data, prompt=..., template_id=...)` returns JPEG bytes of the input's (upright) size
(`scale=` and `fmt="PNG"`/`"WEBP"` give another size or format, for the sandbox's vendor-variant settings):

1. decode a jpg/png (EXIF orientation applied); an alpha channel with real transparency is the
   matte;
2. otherwise fit a smooth background model (quadratic surface per channel) to the border pixels,
   mark pixels far from it as foreground, despeckle and close the mask with blur/threshold, and
   feather the edge (edge pixels are repainted with nearby subject colours, so no halo);
3. draw a backdrop from the prompt words (colours, gradients, textures) or from a template;
4. lay a soft drop shadow on the backdrop, then the subject through the matte.

Mask and backdrop work at a reduced size and are upscaled, so a 4096 px input stays cheap. Noise is
seeded from the backdrop key and the output size: the same input and prompt give the same bytes.

This module owns decoding and composing (steps 1 and 4); `matte` owns step 2 and `backdrops` step 3
(and the template list the sandbox's routes serve).
"""

from __future__ import annotations

import io
from typing import Literal, cast

import numpy as np
from PIL import Image, ImageOps

from .backdrops import BACKDROP_SIDE, DEFAULT_PROMPT, TEMPLATE_PROMPTS, TEMPLATES, parse_prompt, render
from .matte import MATTE_SIDE, cut_out, drop_shadow, fit, to_image, to_l

__all__ = ["TEMPLATES", "ImageDecodeError", "compose", "scaled_size"]


class ImageDecodeError(ValueError):
    """The bytes are not a decodable jpg/png image."""


def compose(data: bytes, *, prompt: str | None = None, template_id: str | None = None,
            scale: float = 1.0, fmt: Literal["JPEG", "PNG", "WEBP"] = "JPEG") -> bytes:
    """Return `data` with its background replaced, as JPEG bytes of the same (upright) size.

    `template_id` wins over `prompt`; an unknown template id raises `ValueError`. `scale` other
    than 1 resizes the result (aspect kept, at least 1 px a side); `fmt="PNG"` or `"WEBP"` encodes it so.
    """
    if template_id is not None:
        if template_id not in TEMPLATE_PROMPTS:
            raise ValueError(f"unknown template_id {template_id!r}")
        text = TEMPLATE_PROMPTS[template_id]
    else:
        text = (prompt or "").strip() or DEFAULT_PROMPT
    subject, alpha = _decode(data)
    size = subject.size
    if alpha is None:
        subject, alpha, small_alpha = cut_out(subject)
    else:
        small_alpha = np.asarray(alpha.resize(fit(size, MATTE_SIDE), Image.Resampling.BILINEAR)) / 255
    backdrop = to_image(render(parse_prompt(text), fit(size, BACKDROP_SIDE), size))
    backdrop = backdrop.resize(size, Image.Resampling.BICUBIC)
    shadow = to_l(drop_shadow(small_alpha)).resize(size, Image.Resampling.BILINEAR)
    backdrop = Image.composite(Image.new("RGB", size), backdrop, shadow)
    result = Image.composite(subject, backdrop, alpha)
    if scale != 1.0:
        result = result.resize(scaled_size(size, scale), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if fmt == "PNG":
        result.save(out, "PNG")
    elif fmt == "WEBP":
        result.save(out, "WEBP", quality=90)
    else:
        result.save(out, "JPEG", quality=90)
    return out.getvalue()


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """`size` times `scale`, rounded, at least 1 px a side."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _decode(data: bytes) -> tuple[Image.Image, Image.Image | None]:
    """Decode, apply EXIF orientation; return (RGB subject, alpha if it has real transparency)."""
    try:
        img: Image.Image = Image.open(io.BytesIO(data), formats=("JPEG", "PNG"))
        img.load()
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"not a decodable jpg/png image: {exc}") from exc
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit greyscale PNG: scale to 8 bits
        img = to_image(np.asarray(img, dtype=np.float32) / 257)
    if img.mode == "P" or "transparency" in img.info:
        img = img.convert("RGBA")
    alpha = None
    if "A" in img.getbands():
        img = img.convert("RGBA")
        candidate = img.getchannel("A")
        # one band, so (min, max) of ints; Pillow's stubs also allow the per-band tuples of a multi-band image
        if cast(tuple[int, int], candidate.getextrema())[0] < 250:
            alpha = candidate
    return img.convert("RGB"), alpha
