"""Mini-ImageNet few-shot classification (Vinyals et al. 2016; Ravi & Larochelle 2017 split).

Mini-ImageNet has no canonical public download (its images are ImageNet's), so users hold it in
one of three forms, and `metarl data import miniimagenet PATH` reads each of them:

(a) Ravi & Larochelle: `PATH/images/*.jpg` with `PATH/{train,val,test}.csv` (`filename,label`);
    without the CSVs, the shipped ones (`miniimagenet_splits/`) say which image is where;
(b) one folder per class per split: `PATH/{train,val,test}/<wnid>/*.jpg` (or .png);
(c) learn2learn's pickle caches `PATH/mini-imagenet-cache-{train,val,test}.pkl`: a dict with
    `image_data` (`uint8 [N, 84, 84, 3]`) and `class_dict` (class -> list of indices), read with
    `metarl.data.safe_pickle`, which refuses any pickle that would call code.

Import converts any of them, once, into the compact form loaders read: per split
`<data root>/miniimagenet/84x84/<split>.npy` (`uint8 [N, 84, 84, 3]`, images grouped by class,
classes sorted by name; resized with Pillow when the source images have another size) and
`<split>.json` (class names and images per class). The folder is written beside and swapped in
by renames, so an interrupted import leaves the previous data intact.

Classes are checked against the Ravi & Larochelle split (64 / 16 / 20 classes, 600 images each):
a class of one split found in another is refused (the model would be tested on classes it was
trained on); data whose classes are exactly the benchmark's must have all 600 images; other data
(custom or tiny test sets) is accepted when it is consistent, and `verify` says which it is.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from metarl.data.files import atomic_dir, stderr
from metarl.data.root import data_root
from metarl.data.safe_pickle import load_arrays
from metarl.errors import UserError
from metarl.progress import progress_bar

SUBDIR = "miniimagenet"
COMPACT = "84x84"
IMAGE_SIZE = 84
FORMAT = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")
BENCHMARK = {"train": 64, "val": 16, "test": 20}
PER_CLASS = 600
PICKLE = "mini-imagenet-cache-{split}.pkl"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS_DIR = Path(__file__).with_name("miniimagenet_splits")
FIX = (
    "run `metarl data import miniimagenet PATH`, where PATH holds images/ with "
    "train.csv, val.csv, test.csv (Ravi & Larochelle), or train/, val/, test/ with one folder "
    "per class, or mini-imagenet-cache-{train,val,test}.pkl (learn2learn)"
)

Loader = Callable[[], np.ndarray]
"""Returns one image, `uint8 [84, 84, 3]`."""
SplitSource = dict[str, list[Loader]]
"""Class name -> loaders of its images, in order."""


# --- the benchmark's split files ------------------------------------------------------------


def _read_csv(path: Path) -> dict[str, list[str]]:
    """Label -> file names, in file order, from a `filename,label` CSV."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: not a readable CSV ({e})") from None
    if rows and not {"filename", "label"} <= set(rows[0]):
        raise UserError(f"{path}: expected the columns filename,label, found {list(rows[0])}")
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["label"], []).append(row["filename"])
    return out


@functools.cache
def benchmark_files() -> dict[str, dict[str, list[str]]]:
    """Split -> class -> image file names of the Ravi & Larochelle split (shipped CSVs)."""
    return {s: _read_csv(SPLITS_DIR / f"{s}.csv") for s in SPLITS}


def benchmark_classes() -> dict[str, list[str]]:
    """Split -> its classes (WordNet IDs) in the Ravi & Larochelle split."""
    return {s: list(files) for s, files in benchmark_files().items()}


def _check_class_split(classes: dict[str, Sequence[str]], where: Path) -> dict[str, bool]:
    """Refuse a class in two splits, or in another split than the benchmark puts it in.

    Returns:
        Per split, whether its classes are exactly the benchmark's.
    """
    home = {c: s for s, names in benchmark_classes().items() for c in names}
    seen: dict[str, str] = {}
    for split, names in classes.items():
        for c in names:
            if c in seen:
                raise UserError(
                    f"{where}: class {c} is in both the {seen[c]} and the {split} split; the "
                    "splits must not share classes"
                )
            seen[c] = split
            if home.get(c, split) != split:
                raise UserError(
                    f"{where}: class {c} is in the {split} split, but the Ravi & Larochelle "
                    f"split puts it in {home[c]} (see metarl/data/miniimagenet_splits); a model "
                    "would be evaluated on classes it was trained on"
                )
    bench = benchmark_classes()
    return {s: sorted(names) == sorted(bench[s]) for s, names in classes.items()}


# --- reading the three source formats -------------------------------------------------------


def _decode_file(path: Path) -> np.ndarray:
    """An image file as `uint8 [84, 84, 3]` RGB (resized with Pillow if it has another size)."""
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
                rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
            return np.asarray(rgb, dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {FIX}") from None
    except (OSError, SyntaxError) as e:  # Pillow reports broken image data with either
        raise UserError(f"{path}: not a readable image ({e})") from None


def _file_loader(path: Path) -> Loader:
    return lambda: _decode_file(path)


def _resize_array(image: np.ndarray) -> np.ndarray:
    if image.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
        return image
    small = Image.fromarray(image).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def _array_loader(images: np.ndarray, index: int) -> Loader:
    return lambda: _resize_array(images[index])


def _read_ravi(src: Path) -> dict[str, SplitSource]:
    """Format (a): `images/` plus `{split}.csv` (the shipped CSVs when the folder has none)."""
    have = [(src / f"{s}.csv").is_file() for s in SPLITS]
    if any(have) and not all(have):
        absent = [f"{s}.csv" for s, h in zip(SPLITS, have, strict=True) if not h]
        raise UserError(f"{src}: has images/ but not {', '.join(absent)}; {FIX}")
    tables = {s: _read_csv(src / f"{s}.csv") for s in SPLITS} if all(have) else benchmark_files()
    images = src / "images"
    out: dict[str, SplitSource] = {}
    for split, table in tables.items():
        out[split] = {
            c: [_file_loader(images / name) for name in files] for c, files in table.items()
        }
        missing = [
            images / name
            for files in table.values()
            for name in files
            if not (images / name).is_file()
        ]
        if missing:
            raise UserError(
                f"{missing[0]} is missing ({len(missing)} images of the {split} split are); "
                "the CSVs name images that images/ does not hold"
            )
    return out


def _read_folders(src: Path) -> dict[str, SplitSource]:
    """Format (b): `{split}/<class>/*.jpg|png`."""
    out: dict[str, SplitSource] = {}
    for split in SPLITS:
        folder = src / split
        if not folder.is_dir():
            raise UserError(f"{folder} is missing (found another split folder); {FIX}")
        classes: SplitSource = {}
        for d in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if files:
                classes[d.name] = [_file_loader(p) for p in files]
        if not classes:
            raise UserError(f"{folder}: no class folder holds .jpg or .png images; {FIX}")
        out[split] = classes
    return out


def _read_pickle(path: Path) -> SplitSource:
    """One split of format (c), checked field by field."""
    data = load_arrays(path)
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path}: expected a dict with image_data and class_dict, found {keys}")
    images, class_dict = data["image_data"], data["class_dict"]
    if not (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.ndim == 4
        and images.shape[-1] == 3
    ):
        what = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images)
        raise UserError(f"{path}: image_data must be uint8 [N, H, W, 3], found {what}")
    if not isinstance(class_dict, dict) or not class_dict:
        raise UserError(f"{path}: class_dict must be a non-empty dict of class -> indices")
    out: SplitSource = {}
    n = len(images)
    for name, indices in class_dict.items():
        idx = [int(i) for i in indices]
        if not idx or min(idx) < 0 or max(idx) >= n:
            raise UserError(f"{path}: class_dict[{name!r}] has indices outside [0, {n})")
        out[str(name)] = [_array_loader(images, i) for i in idx]
    return out


def read_source(src: Path) -> tuple[str, dict[str, SplitSource]]:
    """Recognize the format of the folder `src` and list its images per split and class.

    Returns:
        A short name of the format, and split -> class -> image loaders.
    """
    if not src.is_dir():
        raise UserError(f"{src} is not a folder; {FIX}")
    if (src / "images").is_dir():
        return "Ravi & Larochelle images/ + CSVs", _read_ravi(src)
    pickles = [src / PICKLE.format(split=s) for s in SPLITS]
    if any(p.is_file() for p in pickles):
        missing = [p.name for p in pickles if not p.is_file()]
        if missing:
            raise UserError(f"{src}: {', '.join(missing)} missing; {FIX}")
        return "learn2learn pickle caches", {
            s: _read_pickle(p) for s, p in zip(SPLITS, pickles, strict=True)
        }
    if any((src / s).is_dir() for s in SPLITS):
        return "one folder per class", _read_folders(src)
    raise UserError(f"{src} holds no Mini-ImageNet in a known layout; {FIX}")


# --- the compact form: write, verify, load --------------------------------------------------


def dataset_dir(root: Path | None = None) -> Path:
    """Where the compact form lives: `<data root>/miniimagenet/84x84`."""
    return data_root(root) / SUBDIR / COMPACT


def _write_split(
    folder: Path, split: str, source: SplitSource, origin: str, advance: Callable[[], None]
) -> None:
    """Decode a split into `folder/<split>.npy` image by image (the file is memory-mapped, so
    the whole split never has to fit in memory), then write its `.json`."""
    classes = sorted(source)
    counts = [len(source[c]) for c in classes]
    shape = (sum(counts), IMAGE_SIZE, IMAGE_SIZE, 3)
    images = np.lib.format.open_memmap(
        folder / f"{split}.npy", mode="w+", dtype=np.uint8, shape=shape
    )
    i = 0
    for c in classes:
        for load_one in source[c]:
            images[i] = load_one()
            i += 1
            advance()
    images.flush()
    del images
    meta = {"format": FORMAT, "source": origin, "classes": classes, "counts": counts}
    (folder / f"{split}.json").write_text(json.dumps(meta))


def import_(src: Path, root: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Convert Mini-ImageNet in any of the three source formats into the compact form in the
    data root (replacing what was there only once all of it is written), then verify it."""
    src = Path(src).expanduser()
    kind, splits = read_source(src)
    _check_class_split({s: list(c) for s, c in splits.items()}, src)
    total = sum(len(v) for classes in splits.values() for v in classes.values())
    with (
        atomic_dir(dataset_dir(root)) as tmp,
        progress_bar(
            f"importing Mini-ImageNet ({kind})", stderr, enabled=progress, unit="images"
        ) as bar,
    ):
        task = bar.add_task("import", total=total)
        for split, source in splits.items():
            _write_split(tmp, split, source, f"{src} ({kind})", lambda: bar.advance(task))
    return verify(root)


def fetch(root: Path | None = None) -> dict[str, Any]:
    """There is no canonical public download of Mini-ImageNet: say so and how to import."""
    raise UserError(
        "Mini-ImageNet has no canonical public download (its images come from ImageNet, which "
        "does not allow redistribution), so metarl cannot fetch it; get it in one of the usual "
        f"forms and {FIX}"
    )


class SplitImages(NamedTuple):
    """One split of the compact form: `images` is `uint8 [N, 84, 84, 3]` (memory-mapped),
    grouped by class: class `i` is `classes[i]` and owns `counts[i]` consecutive images."""

    images: np.ndarray
    classes: list[str]
    counts: list[int]

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)


def _open_split(folder: Path, split: str) -> SplitImages:
    meta_path, npy_path = folder / f"{split}.json", folder / f"{split}.npy"
    for p in (meta_path, npy_path):
        if not p.is_file():
            raise UserError(f"{p} is missing; {FIX}")
    try:
        meta = json.loads(meta_path.read_text())
        # copy-on-write map: writable for torch.from_numpy, never written, never copied
        images = np.load(npy_path, mmap_mode="c")
    except ValueError as e:
        raise UserError(f"{npy_path} or its .json is damaged ({e}); {FIX}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{meta_path}: not metarl's format {FORMAT}; {FIX}")
    classes, counts = list(meta["classes"]), [int(c) for c in meta["counts"]]
    problems = []
    if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        problems.append(f"holds {images.dtype} {images.shape}, expected uint8 [N, 84, 84, 3]")
    if len(classes) != len(counts) or len(set(classes)) != len(classes) or not classes:
        problems.append("the class list is empty, repeats a class or does not match the counts")
    if min(counts, default=0) < 1 or sum(counts) != len(images):
        problems.append(f"{len(images)} images, but the classes account for {sum(counts)}")
    if problems:
        raise UserError(f"{npy_path}: {'; '.join(problems)}; {FIX}")
    return SplitImages(images, classes, counts)


def load(root: Path | None = None) -> dict[str, SplitImages]:
    """The compact form, memory-mapped, checked for internal consistency."""
    folder = dataset_dir(root)
    if not folder.is_dir():
        raise UserError(f"no Mini-ImageNet in {folder}; {FIX}")
    return {s: _open_split(folder, s) for s in SPLITS}


def verify(root: Path | None = None) -> dict[str, Any]:
    """Check the compact form in the data root.

    Returns:
        Per split file: its numbers of classes and images, images per class, and whether the
        classes are exactly the Ravi & Larochelle benchmark's (which then needs 600 each).

    Raises:
        UserError: a file is missing or inconsistent, splits share classes, a class sits in
            another split than the benchmark's, or a benchmark split lacks images.
    """
    folder = dataset_dir(root)
    data = load(root)
    benchmark = _check_class_split({s: d.classes for s, d in data.items()}, folder)
    found: dict[str, Any] = {}
    for split, d in data.items():
        path = folder / f"{split}.npy"
        if benchmark[split] and set(d.counts) != {PER_CLASS}:
            short = next(c for c, n in zip(d.classes, d.counts, strict=True) if n != PER_CLASS)
            raise UserError(
                f"{path}: class {short} has {d.counts[d.classes.index(short)]} images; the "
                f"benchmark has {PER_CLASS} per class; {FIX}"
            )
        lo, hi = min(d.counts), max(d.counts)
        found[str(path)] = {
            "classes": len(d.classes),
            "images": len(d.images),
            "per class": str(lo) if lo == hi else f"{lo}-{hi}",
            "split": "Ravi & Larochelle benchmark"
            if benchmark[split]
            else f"custom (not the benchmark's {BENCHMARK[split]} x {PER_CLASS})",
        }
    return found
