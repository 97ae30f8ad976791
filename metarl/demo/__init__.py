"""`metarl demo`: the Reptile blog's one-shot demo as a local web page.

Draw N symbols (one per class), draw one of them again, and see the probabilities with which a
meta-trained Omniglot network, adapted to your N drawings with the recipe's evaluation inner
loop, assigns the new drawing to each class. `classifier` adapts and predicts, `drawings` turns
canvas PNGs into Omniglot-like 28x28 inputs, `server` serves the page and the JSON endpoint.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import torch

from metarl.demo.classifier import FewShotClassifier, from_pretrained, from_run
from metarl.demo.server import DemoServer
from metarl.errors import UserError

DEFAULT_MODEL = "omniglot-5way-1shot-metasgd"


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (a warning is due for anything else)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    run: Path | None = None,
    model: str = DEFAULT_MODEL,
    device: torch.device | None = None,
) -> DemoServer:
    """A bound (not yet serving) demo server for a run directory or a shipped model; port 0
    picks a free port (`server.url` says which)."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: expected 0 (a free port) to 65535")
    device = device or torch.device("cpu")
    classifier: FewShotClassifier
    if run is not None:
        classifier, info = from_run(run, device)
    else:
        classifier, info = from_pretrained(model, device)
    try:
        return DemoServer((host, port), classifier, info)
    except OSError as e:
        raise UserError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror})"
        ) from None


__all__ = ["DEFAULT_MODEL", "DemoServer", "FewShotClassifier", "is_loopback", "make_server"]
