"""The networks of the Reptile paper, as plain `nn.Module`s the functional inner loop drives."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from metarl.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(
    in_features: int,
    out_features: int,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
) -> nn.Sequential:
    """A fully connected network, e.g. the sine regressor 1-64-64-1 with tanh."""
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation = {activation!r}: expected one of {', '.join(ACTIVATIONS)}"
        )
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ConfigError(f"model.hidden = {list(hidden)}: expected a list of positive widths")
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation]()]
        width = int(h)
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def default_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU; anything else is checked, not ignored."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r}: CUDA is not available here; use cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    return dev
