"""Canvas drawings (PNG data URLs) to the network's input, through Omniglot's own preprocessing.

The page draws dark strokes on a white square canvas, like the Omniglot drawings (black on
white, 105x105), and sends it as a PNG; `metarl.data.omniglot.preprocess` then does to it what
it did to every Omniglot image (Lanczos to 28x28, inverted so that strokes are bright). The
page's stroke width (`PEN`, which the page reads from `/api/info`) is chosen so that the 28x28
result has the dataset's stroke width: Omniglot's strokes are 5-6 pixels thick at 105 (the
median over 220 test drawings of each ink pixel's shorter horizontal or vertical run is 6),
so 11 pixels at the canvas's 210. `scripts/tools/demo_screenshot.py --inputs F.png` shows both at
28x28 side by side.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image

from metarl.data.omniglot import preprocess

PREFIX = "data:image/png;base64,"
CANVAS = 210
"""The page's canvas side, in pixels (twice Omniglot's 105)."""
PEN = 11
"""The page's pen width in canvas pixels."""
MAX_SIDE = 1024
"""Largest canvas side accepted (the page sends 210): bounds decoding work per request."""


class BadDrawing(ValueError):
    """A drawing the server cannot use; the message names which and why."""


def decode(data_url: object, what: str) -> np.ndarray:
    """`uint8 [28, 28]` (strokes bright) from a PNG data URL; `BadDrawing` naming `what`."""
    if not isinstance(data_url, str) or not data_url.startswith(PREFIX):
        raise BadDrawing(f"{what}: expected a string starting with {PREFIX!r}")
    try:
        png = base64.b64decode(data_url[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise BadDrawing(f"{what}: the data URL is not valid base64") from None
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as im:
            if max(im.size) > MAX_SIDE:
                raise BadDrawing(f"{what}: {im.size[0]}x{im.size[1]} pixels, at most {MAX_SIDE}")
            im.load()
            pixels = preprocess(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, BadDrawing):
            raise
        raise BadDrawing(f"{what}: not a readable PNG image") from None
    if not pixels.any():
        raise BadDrawing(f"{what}: the drawing is empty")
    return pixels
