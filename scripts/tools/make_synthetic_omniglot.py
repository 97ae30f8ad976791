"""Write a synthetic Omniglot in the published layout, for tests and demos without the data.

`images_background.zip` (30 alphabets, 964 characters) and `images_evaluation.zip` (20
alphabets, 659 characters), 20 drawings of each, laid out as the real archives are
(`<half>/<Alphabet>/characterNN/<ID>_<DD>.png`, IDs 0001-1623, drawers 01-20, directory
entries, PNGs stored, sorted): `metarl data import omniglot FOLDER` takes it, `verify`,
the loaders, the catalog's Omniglot recipes and the demo's classifier run on it. A character
is 2-4 random pen strokes; each of its 20 drawings redraws them with a small random shift,
slant and wobble, so characters are told apart by shape as in the real set. Not
Omniglot: no figure measured on it says anything about the real dataset.

    python scripts/tools/make_synthetic_omniglot.py OUT_FOLDER [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 105
"""The real drawings' size (mode "1" PNGs, white background, black strokes)."""
HALVES = (("images_background", 30, 964), ("images_evaluation", 20, 659))
DRAWINGS = 20
STAMP = (2018, 12, 12, 10, 48, 58)  # the real archives' fixed timestamp


def strokes(rng: np.random.Generator) -> list[np.ndarray]:
    """A character: 2-4 strokes of 3-5 points each, in the middle 70% of the canvas."""
    return [
        rng.uniform(0.15, 0.85, size=(int(rng.integers(3, 6)), 2)) * SIZE
        for _ in range(int(rng.integers(2, 5)))
    ]


def draw(character: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """One drawing of `character`: shifted, slanted and wobbled a little, as a 1-bit PNG."""
    shift = rng.normal(0, 3, size=2)
    slant = np.array([[1.0, rng.normal(0, 0.08)], [rng.normal(0, 0.08), 1.0]])
    image = Image.new("1", (SIZE, SIZE), 1)
    pen = ImageDraw.Draw(image)
    centre = SIZE / 2
    for stroke in character:
        points = (stroke - centre) @ slant.T + centre + shift
        points = points + rng.normal(0, 1.5, size=points.shape)
        pen.line([tuple(p) for p in points.tolist()], fill=0, width=int(rng.integers(3, 6)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write(folder: Path, seed: int = 0) -> list[Path]:
    """Both zips into `folder`; the same seed writes the same bytes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written, char_id = [], 1
    for half, alphabets, characters in HALVES:
        per_alphabet = [characters // alphabets] * alphabets
        per_alphabet[-1] += characters - sum(per_alphabet)
        members: dict[str, bytes | None] = {f"{half}/": None}
        for a, count in enumerate(per_alphabet):
            alphabet = f"{half}/Synthetic_{a + 1:02d}/"
            members[alphabet] = None
            for c in range(1, count + 1):
                folder_name = f"{alphabet}character{c:02d}/"
                members[folder_name] = None
                character = strokes(rng)
                for d in range(1, DRAWINGS + 1):
                    members[f"{folder_name}{char_id:04d}_{d:02d}.png"] = draw(character, rng)
                char_id += 1
        path = folder / f"{half}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for name in sorted(members):
                zf.writestr(zipfile.ZipInfo(name, STAMP), members[name] or b"")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write the two zips into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in write(args.out, args.seed):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
