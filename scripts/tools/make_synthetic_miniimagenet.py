"""Write a small synthetic Mini-ImageNet in the Ravi & Larochelle layout, for tests without
the data.

`images/*.jpg` (84x84 RGB JPEGs) with `train.csv`, `val.csv` and `test.csv` (`filename,label`),
as the Ravi & Larochelle release lays them out: the first `--classes` classes of each split and
the first `--per-class` file names of each, taken from the shipped split CSVs
(`metarl/data/miniimagenet_splits/`), so the WordNet IDs sit in their real splits. `metarl data
import miniimagenet FOLDER` takes it and `verify` calls it a custom set; the Mini-ImageNet
recipes train and evaluate on it. The defaults (5 classes of 30 images per split) are the
fewest the catalog's recipes need: 5 ways, 15 + 15 shots in training. A class's images are
one random colour field with a random bright ellipse, each drawn again with jitter and noise,
so classes differ in what the images show. Not Mini-ImageNet: no figure measured on it says
anything about the real dataset.

    python scripts/tools/make_synthetic_miniimagenet.py OUT_FOLDER [--classes 5] [--per-class 30]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 84
SPLITS_DIR = Path(__file__).resolve().parents[2] / "metarl" / "data" / "miniimagenet_splits"


def _split_table(split: str, classes: int, per_class: int) -> dict[str, list[str]]:
    """The first `classes` labels of the shipped CSV and the first `per_class` files of each."""
    table: dict[str, list[str]] = {}
    with (SPLITS_DIR / f"{split}.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            files = table.setdefault(row["label"], [])
            if len(files) < per_class:
                files.append(row["filename"])
    labels = list(table)[:classes]
    return {label: table[label] for label in labels}


def _picture(base: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One image of a class: its colour and ellipse, moved a little, with pixel noise."""
    field = base + rng.normal(0, 12, size=(SIZE, SIZE, 3))
    image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
    shift = rng.normal(0, 3, size=2)
    corners = (box + np.concatenate([shift, shift])).tolist()
    ImageDraw.Draw(image).ellipse(corners, fill=tuple(int(v) for v in 255 - base))
    return image


def write(folder: Path, classes: int = 5, per_class: int = 30, seed: int = 0) -> Path:
    """The images and the three CSVs into `folder`; the same arguments write the same files."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        table = _split_table(split, classes, per_class)
        with (folder / f"{split}.csv").open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["filename", "label"])
            for label, files in table.items():
                base = rng.uniform(30, 225, size=3)
                centre = rng.uniform(25, 59, size=2)
                half = rng.uniform(8, 20, size=2)
                box = np.concatenate([centre - half, centre + half])
                for name in files:
                    _picture(base, box, rng).save(images / name, quality=90)
                    out.writerow([name, label])
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write images/ and the CSVs into")
    parser.add_argument("--classes", type=int, default=5, help="classes per split")
    parser.add_argument("--per-class", type=int, default=30, help="images per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = write(args.out, args.classes, args.per_class, args.seed)
    count = sum(1 for _ in (folder / "images").iterdir())
    print(f"wrote {count} images and 3 CSVs into {folder}")


if __name__ == "__main__":
    main()
