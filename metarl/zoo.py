"""Pretrained meta-parameters that ship inside the package, loaded by name.

Each model is two files in `metarl/weights/`: `NAME.pt`, a float16 state dict (read with
`torch.load(weights_only=True)`, so the file cannot run code; for Meta-SGD it holds the learned
rates `alpha.*` beside the weights), and `NAME.json`, its provenance:
the full recipe it was meta-trained with, the meta-iterations and seed, the sha256 of `NAME.pt`,
and its accuracy on the held-out test split in both evaluation modes. Loading checks the sha256
against the provenance before reading the weights, so a damaged or swapped file is refused.
`scripts/tools/make_pretrained.py` writes both files.

    >>> import metarl
    >>> model = metarl.pretrained("omniglot-5way-1shot-metasgd")  # the demo's
    >>> model.recipe.train.algorithm.value, model.provenance["meta_iterations"]
    ('metasgd', 14693)
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metarl.atomic import atomic_write_bytes
from metarl.config import Algorithm, Recipe, recipe_from_dict
from metarl.errors import UserError
from metarl.models import WithLearnedRates

WEIGHTS_DIR = Path(__file__).parent / "weights"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
"""A shipped model's name: no '/', no '..', no leading dot."""
PREFIX = "pretrained:"
"""How the CLI names a shipped model where it also accepts other sources (`--init`)."""


@dataclass
class Pretrained:
    """A shipped model: its recipe, the network holding the weights (float32), and where the
    weights came from."""

    name: str
    recipe: Recipe
    model: nn.Module
    provenance: dict[str, Any]


def available(folder: Path = WEIGHTS_DIR) -> list[str]:
    """Names of the shipped models (those with both files).

    Args:
        folder: Where to look (default: the package's weights).

    Returns:
        The names, sorted.

    Examples:
        >>> from metarl.zoo import available
        >>> available()
        ['omniglot-5way-1shot', 'omniglot-5way-1shot-metasgd']
    """
    return sorted(p.stem for p in folder.glob("*.json") if p.with_suffix(".pt").is_file())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_model(recipe: Recipe) -> nn.Module:
    """The recipe's network without its task data (the demo must run without the dataset);
    for Meta-SGD wrapped with its learned rates, as training holds it, since the rates are
    part of what ships (`alpha.*` beside the weights in `NAME.pt`)."""
    if recipe.task_name != "omniglot":
        raise UserError(
            f"task {recipe.task_name!r}: pretrained models exist for omniglot recipes only"
        )
    from metarl.distributions.omniglot import omniglot_model

    net = omniglot_model(int(recipe.task_options.get("ways", 5)), **recipe.model)
    if recipe.train.algorithm is Algorithm.METASGD:
        return WithLearnedRates(net, recipe.train.inner_lr)
    return net


def provenance(name: str, folder: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """The provenance JSON of a shipped model: its recipe, how it was trained (the command
    and the versions) and its evaluation.

    Args:
        name: A shipped model (`available()`).
        folder: Where to look (default: the package's weights).

    Returns:
        The JSON as a dict.

    Raises:
        UserError: Not a name, or no such model; the message names the shipped ones.
    """
    if not NAME.fullmatch(name):  # a name, never a path out of the weights folder
        names = ", ".join(available(folder)) or "none"
        raise UserError(
            f"pretrained model {name!r}: expected a name (letters, digits, '.', '_', '-'), "
            f"not a path; shipped: {names}"
        )
    path = folder / f"{name}.json"
    if not path.is_file() or not path.with_suffix(".pt").is_file():
        names = ", ".join(available(folder)) or "none"
        raise UserError(f"pretrained model {name!r} does not exist; shipped: {names}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def load_weights(name: str, folder: Path = WEIGHTS_DIR) -> tuple[dict[str, torch.Tensor], dict]:
    """The float32 state dict of a shipped model and its provenance, after checking that the
    weights file's sha256 is the one its provenance records.

    Args:
        name: A shipped model (`available()`).
        folder: Where to look (default: the package's weights).

    Returns:
        The weights by parameter name, and the provenance.

    Raises:
        UserError: An unknown model, or a weights file whose hash differs.
    """
    info = provenance(name, folder)
    path = folder / f"{name}.pt"
    found = sha256(path)
    if found != info.get("sha256"):
        raise UserError(
            f"{path}: sha256 {found} does not match {info.get('sha256')} recorded in "
            f"{path.with_suffix('.json').name}; the file is damaged or was replaced "
            "(reinstall metarl)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float() for k, v in state.items()}, info


def pretrained(
    name: str, device: torch.device | str = "cpu", folder: Path = WEIGHTS_DIR
) -> Pretrained:
    """A shipped model by name, on `device`: `metarl.pretrained(...)`.

    Args:
        name: A shipped model (`available()`).
        device: Where the network goes.
        folder: Where to look (default: the package's weights).

    Returns:
        The model (its recipe, its network holding the weights, its provenance).

    Raises:
        UserError: An unknown model, or a weights file whose hash differs.

    Examples:
        >>> import metarl, torch
        >>> shipped = metarl.pretrained("omniglot-5way-1shot")
        >>> shipped.recipe.task_name, len(shipped.provenance["sha256"])
        ('omniglot', 64)
        >>> shipped.model(torch.zeros(2, 1, 28, 28)).shape  # 5-way logits
        torch.Size([2, 5])
    """
    weights, info = load_weights(name, folder)
    recipe = recipe_from_dict(info["recipe"], source=f"pretrained:{name}")
    model = build_model(recipe)
    model.load_state_dict(weights)
    return Pretrained(name, recipe, model.to(device), info)


def write_weights(name: str, state: dict[str, torch.Tensor], folder: Path = WEIGHTS_DIR) -> str:
    """Write `NAME.pt` as float16 (atomically) and return its sha256."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().half().contiguous() for k, v in state.items()}, buffer)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{name}.pt", buffer.getvalue())
    (folder / f"{name}.pt").chmod(0o644)  # package data, readable by every user
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def write_provenance(name: str, info: dict[str, Any], folder: Path = WEIGHTS_DIR) -> Path:
    path = folder / f"{name}.json"
    atomic_write_bytes(path, (json.dumps(info, indent=2) + "\n").encode())
    path.chmod(0o644)
    return path
