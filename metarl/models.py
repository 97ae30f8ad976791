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
    """A fully connected network, e.g. the sine regressor 1-64-64-1 with tanh.

    Args:
        in_features: Inputs.
        out_features: Outputs.
        hidden: Widths of the hidden layers.
        activation: A name of `ACTIVATIONS` ("tanh", "relu").

    Returns:
        Linear layers with the activation between them (none after the last).

    Raises:
        ConfigError: An unknown activation or an empty or non-positive width.

    Examples:
        >>> from metarl.models import mlp
        >>> net = mlp(1, 1, hidden=[64, 64])
        >>> sum(p.numel() for p in net.parameters())
        4353
    """
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


def conv_classifier(
    channels: int,
    size: int,
    classes: int,
    filters: int = 64,
    layers: int = 4,
    pool: bool = False,
    pool_before_norm: bool = False,
) -> nn.Sequential:
    """The Reptile paper's conv classifiers, flattened and followed by a linear layer to
    `classes` logits. Each of the `layers` blocks is

    - `pool=False` (Omniglot): conv 3x3 stride 2 padding 1, BatchNorm, ReLU;
    - `pool=True` (Mini-ImageNet): conv 3x3 stride 1 padding 1, BatchNorm, max-pool 2, ReLU.
      The pooling rounds up (`ceil_mode`), as TensorFlow's `padding='same'` pooling of
      supervised-reptile does, so 84 -> 42 -> 21 -> 11 -> 6 (not 5). That is the paper's
      order; supervised-reptile's code pools *before* BatchNorm (its batch statistics then
      come from the pooled map), which `pool_before_norm=True` reproduces.

    BatchNorm keeps no running statistics (`track_running_stats=False`): it always normalizes
    with the statistics of the batch it sees, as the paper's networks do, and it has no buffers
    that tasks adapted side by side under `vmap` would have to share. The convolutions have
    no bias: BatchNorm subtracts the batch mean right after, so a bias would get a gradient of
    exactly zero plus rounding noise, which Adam (normalizing by the gradient's size) would
    turn into steps of size lr in random directions.
    """
    if filters < 1 or layers < 1:
        raise ConfigError(f"model.filters = {filters}, model.layers = {layers}: must be >= 1")
    blocks: list[nn.Module] = []
    width = channels
    for _ in range(layers):
        stride = 1 if pool else 2
        conv = nn.Conv2d(width, filters, kernel_size=3, stride=stride, padding=1, bias=False)
        norm = nn.BatchNorm2d(filters, track_running_stats=False)
        if not pool:
            blocks += [conv, norm, nn.ReLU()]
        elif pool_before_norm:
            blocks += [conv, nn.MaxPool2d(2, ceil_mode=True), norm, nn.ReLU()]
        else:
            blocks += [conv, norm, nn.MaxPool2d(2, ceil_mode=True), nn.ReLU()]
        width = filters
        size = (size + 1) // 2  # stride 2 or ceil-mode pool 2: 28 -> 14 -> 7 -> 4 -> 2
    blocks += [nn.Flatten(), nn.Linear(filters * size * size, classes)]
    return nn.Sequential(*blocks)


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


class WithLearnedRates(nn.Module):
    """A network plus Meta-SGD's alpha: one learned inner learning rate per weight entry.

    The rates are parameters of this module (`alpha.0`, `alpha.1`, ... in the order of the
    network's parameters), so they are meta-parameters like the weights: the outer optimizer
    steps them, the checkpoint stores them and `metarl eval` adapts with them. The forward
    pass is the network's alone.
    """

    def __init__(self, net: nn.Module, init: float) -> None:
        super().__init__()
        self.net = net
        self.alpha = nn.ParameterList(
            [nn.Parameter(torch.full_like(p.detach(), init)) for p in net.parameters()]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def split(
        self, params: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(weights, rates) of a parameter dict of this module, both keyed by weight name."""
        weights = {k: v for k, v in params.items() if not k.startswith("alpha.")}
        rates = {k: params[f"alpha.{i}"] for i, k in enumerate(weights)}
        return weights, rates
