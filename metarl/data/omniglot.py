"""Omniglot few-shot classification (Lake et al. 2015), as the Reptile paper runs it.

Files: `<data root>/omniglot/images_background.zip` and `images_evaluation.zip` (or the
extracted folders `images_background/`, `images_evaluation/`), laid out as in
brendenlake/omniglot: `images_background/<Alphabet>/characterNN/<ID>_<DD>.png`, 30 + 20
alphabets, 964 + 659 characters, 20 drawings each. `verify` checks that content (not byte
checksums, so repacked archives of the same PNGs pass), `import_` copies files a user has,
`fetch` downloads the canonical archives and checks their md5.

Every drawing is decoded once, resized to 28x28 and inverted (strokes bright), into
`omniglot/omniglot28.npy` (`uint8 [1623, 20, 28, 28]`) with `omniglot28.json` beside it; later
loads memory-map that file instead of decoding 32,460 PNGs.

Splits (`split_mode="paper"`): all 1623 characters pooled and shuffled with `split_seed`; the
first 1200 train, the other 423 test; the last `val_classes` (100) of the 1200 are the
validation split, so meta-training sees 1100 characters. Training classes are augmented by
rotations of 0/90/180/270 degrees as new classes (4400 classes); validation and test classes are
not rotated. `split_mode="background"` trains on `images_background` (less `val_classes` for
validation) and tests on `images_evaluation`, the split of Lake et al.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from metarl.data.files import (
    atomic_file,
    download,
    install_file,
    install_tree,
    remove,
    stderr,
)
from metarl.data.root import data_root, user_cache_dir
from metarl.errors import UserError
from metarl.progress import progress_bar

SUBDIR = "omniglot"
IMAGE_SIZE = 28
CACHE_FORMAT = 1
URL = "https://github.com/brendenlake/omniglot/raw/master/python/{part}.zip"
MD5 = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
FIX = (
    "run `metarl data import omniglot PATH` (a folder with the two zips) "
    "or `metarl data fetch omniglot`"
)


@dataclass(frozen=True)
class PartLayout:
    """What one half of the dataset must hold."""

    name: str
    alphabets: int
    characters: int
    drawings: int = 20


LAYOUT: tuple[PartLayout, ...] = (
    PartLayout("images_background", alphabets=30, characters=964),
    PartLayout("images_evaluation", alphabets=20, characters=659),
)


# --- reading one half, zipped or extracted --------------------------------------------------


class _Part:
    """The drawings of one half, read from a zip or an extracted folder.

    `characters` maps `"<Alphabet>/characterNN"` to its drawing file names (sorted); member
    paths are relative to the half's top folder.
    """

    def __init__(self, path: Path, layout: PartLayout) -> None:
        self.path = path
        self.layout = layout
        self._zip: zipfile.ZipFile | None = None
        if path.suffix == ".zip":
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, EOFError) as e:
                raise UserError(f"{path} is not a readable zip archive ({e}); {FIX}") from None
            top = f"{layout.name}/"
            names = [n[len(top) :] for n in self._zip.namelist() if n.startswith(top)]
        else:
            names = [p.relative_to(path).as_posix() for p in path.rglob("*.png")]
        pattern = re.compile(r"^([^/]+)/([^/]+)/([^/]+\.png)$")
        groups: dict[str, list[str]] = {}
        for name in names:
            m = pattern.match(name)
            if m:
                groups.setdefault(f"{m[1]}/{m[2]}", []).append(m[3])
        self.characters = {k: sorted(v) for k, v in sorted(groups.items())}

    def read(self, character: str, drawing: str) -> bytes:
        member = f"{character}/{drawing}"
        if self._zip is not None:
            return self._zip.read(f"{self.layout.name}/{member}")
        return (self.path / member).read_bytes()

    def check(self) -> dict[str, int]:
        """Check counts (and the zip's CRCs); raise a `UserError` naming the file otherwise."""
        lay = self.layout
        alphabets = {c.split("/")[0] for c in self.characters}
        problems = []
        if len(alphabets) != lay.alphabets:
            problems.append(f"{len(alphabets)} alphabets, expected {lay.alphabets}")
        if len(self.characters) != lay.characters:
            problems.append(f"{len(self.characters)} characters, expected {lay.characters}")
        for character, drawings in self.characters.items():
            if len(drawings) != lay.drawings:
                problems.append(
                    f"{character} has {len(drawings)} drawings, expected {lay.drawings}"
                )
                break
        if not problems and self._zip is not None:
            try:
                bad = self._zip.testzip()
            except (zipfile.BadZipFile, EOFError, OSError) as e:
                bad = f"? ({e})"
            if bad is not None:
                problems.append(f"member {bad} is corrupt (truncated or damaged archive)")
        if not problems:
            not_png = next(self._not_png(), None)
            if not_png is not None:
                problems.append(f"member {not_png} is not a PNG image")
        if problems:
            raise UserError(f"{self.path}: {'; '.join(problems)}; {FIX}")
        return {
            "alphabets": len(alphabets),
            "characters": len(self.characters),
            "drawings": sum(len(d) for d in self.characters.values()),
        }

    def _not_png(self) -> Iterator[str]:
        """Members whose first bytes are not the PNG signature (what training would fail to
        decode much later)."""
        for character, drawings in self.characters.items():
            for drawing in drawings:
                member = f"{character}/{drawing}"
                if self._zip is not None:
                    with self._zip.open(f"{self.layout.name}/{member}") as f:
                        head = f.read(len(PNG_SIGNATURE))
                else:
                    with open(self.path / member, "rb") as f:
                        head = f.read(len(PNG_SIGNATURE))
                if head != PNG_SIGNATURE:
                    yield member

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _source(folder: Path, part: PartLayout) -> Path | None:
    """The zip of `part` in `folder`, else its extracted folder, else None."""
    for candidate in (folder / f"{part.name}.zip", folder / part.name):
        if candidate.is_file() or candidate.is_dir():
            return candidate
    return None


@contextmanager
def _open_parts(folder: Path, layout: Sequence[PartLayout]) -> Iterator[list[_Part]]:
    parts: list[_Part] = []
    try:
        for part in layout:
            path = _source(folder, part)
            if path is None:
                raise UserError(
                    f"{folder / part.name}.zip is missing (nor is there a folder "
                    f"{folder / part.name}); {FIX}"
                )
            parts.append(_Part(path, part))
        yield parts
    finally:
        for p in parts:
            p.close()


# --- verify, import, fetch ------------------------------------------------------------------


def dataset_dir(root: Path) -> Path:
    return root / SUBDIR


def verify(root: Path | None = None, layout: Sequence[PartLayout] = LAYOUT) -> dict[str, Any]:
    """Check the Omniglot files in the data root by content.

    Returns:
        Per half, the numbers of alphabets, characters and drawings found.

    Raises:
        UserError: a file is missing, unreadable, or holds the wrong alphabets or drawings; the
            message names the file and how to fix it.
    """
    folder = dataset_dir(data_root(root))
    with _open_parts(folder, layout) as parts:
        return {str(p.path): p.check() for p in parts}


def _clear_cache(folder: Path) -> None:
    for suffix in (".npy", ".json"):
        (folder / f"omniglot{IMAGE_SIZE}{suffix}").unlink(missing_ok=True)


def import_(
    src: Path, root: Path | None = None, layout: Sequence[PartLayout] = LAYOUT
) -> dict[str, Any]:
    """Copy Omniglot files a user has into the data root, then verify them there.

    Args:
        src: a folder holding `images_background.zip` and `images_evaluation.zip`, or the
            extracted folders `images_background/` and `images_evaluation/` (or one of each).
        root: the data root (default: `data_root()`).
    """
    src = Path(src).expanduser()
    if not src.is_dir():
        raise UserError(
            f"{src} is not a folder; give the folder that holds images_background.zip and "
            "images_evaluation.zip (or the extracted images_background/, images_evaluation/)"
        )
    folder = dataset_dir(data_root(root))
    with _open_parts(src, layout) as parts:
        for p in parts:
            p.check()  # never install something that would fail verification
    for part in layout:
        path = _source(src, part)
        assert path is not None  # _open_parts found it
        dest = folder / path.name
        if dest.exists() and dest.resolve() == path.resolve():
            continue
        if path.is_dir():
            install_tree(path, dest)
            remove(folder / f"{part.name}.zip")  # the zip would shadow the new folder
        else:
            install_file(path, dest)
            remove(folder / part.name)
    _clear_cache(folder)
    return verify(root, layout)


def fetch(
    root: Path | None = None,
    *,
    url: str = URL,
    md5: dict[str, str] = MD5,
    layout: Sequence[PartLayout] = LAYOUT,
    progress: bool = True,
) -> dict[str, Any]:
    """Download the canonical archives of brendenlake/omniglot, check their md5, verify them.

    Args:
        url: a template with `{part}`; a `file://` URL works too (tests, mirrors).
        md5: the expected md5 of each part's archive.
    """
    folder = dataset_dir(data_root(root))
    for part in layout:
        link = url.format(part=part.name)
        fix = f"download {link} yourself and run `metarl data import omniglot FOLDER`"
        download(link, folder / f"{part.name}.zip", md5[part.name], fix=fix, progress=progress)
        remove(folder / part.name)
    _clear_cache(folder)
    return verify(root, layout)


# --- decoding once into a cache -------------------------------------------------------------


class OmniglotImages(NamedTuple):
    """The decoded dataset.

    `images` is `uint8 [characters, drawings, 28, 28]` (strokes bright); the first `background`
    characters come from `images_background`; `names[i]` is `"<half>/<Alphabet>/characterNN"`.
    """

    images: np.ndarray
    background: int
    names: list[str]


def _fingerprint(folder: Path, layout: Sequence[PartLayout]) -> dict[str, list[int]]:
    """Size and modification time of each zip, so a replaced archive invalidates the cache
    (`import_` and `fetch` also delete it). Extracted folders are trusted as they are."""
    out = {}
    for part in layout:
        path = _source(folder, part)
        if path is not None and path.is_file():
            st = path.stat()
            out[part.name] = [st.st_size, st.st_mtime_ns]
    return out


def preprocess(drawing: Image.Image) -> np.ndarray:
    """A drawing (dark strokes on a light background, any size, any mode) as the network sees
    it: `uint8 [28, 28]`, Lanczos-resized, strokes bright. Every Omniglot image goes through
    this, and so does a drawing from `metarl demo`'s canvas.

    Args:
        drawing: a PIL image of one symbol.

    Returns:
        The `uint8 [28, 28]` array the network reads.
    """
    if drawing.mode in ("RGBA", "LA") or "transparency" in drawing.info:
        white = Image.new("RGBA", drawing.size, (255, 255, 255, 255))
        drawing = Image.alpha_composite(white, drawing.convert("RGBA"))  # transparent = paper
    small = drawing.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return 255 - np.asarray(small, dtype=np.uint8)


def _decode(png: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(png)) as im:
            return preprocess(im)
    except (OSError, SyntaxError) as e:  # Pillow reports broken PNG data with either
        raise UserError(f"{where}: not a readable PNG ({e}); {FIX}") from None


def _decode_all(folder: Path, layout: Sequence[PartLayout], progress: bool) -> OmniglotImages:
    with _open_parts(folder, layout) as parts:
        for p in parts:
            p.check()
        n = sum(len(p.characters) for p in parts)
        drawings = layout[0].drawings
        images = np.empty((n, drawings, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        names: list[str] = []
        with progress_bar("decoding Omniglot once", stderr, enabled=progress, unit="images") as bar:
            task = bar.add_task("decode", total=n)
            for p in parts:
                for character, files in p.characters.items():
                    i = len(names)
                    for j, name in enumerate(files):
                        images[i, j] = _decode(p.read(character, name), f"{p.path}: {name}")
                    names.append(f"{p.layout.name}/{character}")
                    bar.advance(task)
        return OmniglotImages(images, len(parts[0].characters), names)


def _cache_dir(folder: Path) -> Path:
    """The data folder if writable, else a per-user folder (e.g. a read-only shared root)."""
    if os.access(folder, os.W_OK):
        return folder
    return user_cache_dir() / SUBDIR


def _read_cache(meta_path: Path, npy_path: Path, expected: dict[str, Any]) -> OmniglotImages | None:
    """The cached decode if it is complete and made from the current files, else None (the
    caller decodes again and overwrites it)."""
    if not (meta_path.is_file() and npy_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or {k: meta.get(k) for k in expected} != expected:
            return None
        images = np.load(npy_path, mmap_mode="r")
        names, background = list(meta["names"]), int(meta["background"])
    except (ValueError, KeyError, TypeError, OSError):  # damaged: rebuild rather than fail
        return None
    # written by another version or damaged in place: the shape and type are those decoded
    if images.dtype != np.uint8 or images.shape[0] != len(names) or images.ndim != 4:
        return None
    if images.shape[2:] != (IMAGE_SIZE, IMAGE_SIZE) or images.shape[1] < 1:
        return None
    return OmniglotImages(images, background, names)


def load(
    root: Path | None = None, layout: Sequence[PartLayout] = LAYOUT, progress: bool = True
) -> OmniglotImages:
    """The decoded dataset: the cache if it matches the files, else decode once and cache."""
    folder = dataset_dir(data_root(root))
    cache = _cache_dir(folder)
    stem = f"omniglot{IMAGE_SIZE}"
    meta_path, npy_path = cache / f"{stem}.json", cache / f"{stem}.npy"
    expected = {
        "format": CACHE_FORMAT,
        "source": str(folder.resolve()),
        "fingerprint": _fingerprint(folder, layout),
    }
    cached = _read_cache(meta_path, npy_path, expected)
    if cached is not None:
        return cached
    if not folder.is_dir():
        raise UserError(f"no Omniglot data in {folder}; {FIX}")
    data = _decode_all(folder, layout, progress)
    with atomic_file(npy_path) as tmp, tmp.open("wb") as f:
        np.save(f, data.images)
    with atomic_file(meta_path) as tmp:  # written last: it marks the cache complete
        meta = {**expected, "background": data.background, "names": data.names}
        tmp.write_text(json.dumps(meta))
    return data
