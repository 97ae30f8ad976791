from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from metarl.config import OptimizerName
from metarl.distributions.sine import SineDistribution
from metarl.learners.inner_loop import InnerLoop, InnerOptimizer

# The tests run `metarl train` / `eval` in this process hundreds of times (typer's CliRunner):
# keeping freed memory (`metarl.allocator`, process-wide) would let this process's heap grow
# to its peak and never shrink over the whole suite. tests/test_allocator.py checks the
# setting in its own processes.
os.environ.setdefault("METARL_MALLOC", "system")


@pytest.fixture
def sine() -> SineDistribution:
    return SineDistribution()


@pytest.fixture
def sine_batch(sine: SineDistribution):
    rng = np.random.default_rng(0)
    return sine.episodes(sine.sample(6, rng), rng, support=10, query=20)


@pytest.fixture
def small_mlp(sine: SineDistribution) -> torch.nn.Module:
    torch.manual_seed(0)
    return sine.build_model(hidden=[16, 16])


def learner_for(model: torch.nn.Module, name: str, lr: float, inner_batch: int = 0) -> InnerLoop:
    return InnerLoop(model, "mse", InnerOptimizer(OptimizerName(name), lr, beta1=0.5), inner_batch)


def _real_omniglot_root() -> Path | None:
    """$METARL_DATA when it holds the real Omniglot archives."""
    root = os.environ.get("METARL_DATA")
    if root and (Path(root) / "omniglot" / "images_background.zip").is_file():
        return Path(root)
    return None


def _tool(name: str) -> Any:
    """The module of the script scripts/tools/NAME.py (scripts are not a package)."""
    script = Path(__file__).parents[1] / "scripts" / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_omniglot(folder: Path) -> Path:
    """The synthetic Omniglot of scripts/tools/make_synthetic_omniglot.py (the published
    layout and counts, random strokes) written into `folder`."""
    _tool("make_synthetic_omniglot").write(folder)
    return folder


@pytest.fixture(scope="session")
def omniglot_root(tmp_path_factory) -> Path:
    """A data root holding Omniglot: the real one where $METARL_DATA has it, else the
    synthetic set imported (so the loaders, the Omniglot recipes and the shipped model's
    evaluation run in every test run; figures about the real data stay in the tests that
    read $METARL_DATA)."""
    real = _real_omniglot_root()
    if real is not None:
        return real
    from metarl.data.omniglot import import_

    base = tmp_path_factory.mktemp("omniglot-synthetic")
    import_(synthetic_omniglot(base / "src"), base / "root")
    return base / "root"


def _real_miniimagenet_root() -> Path | None:
    """$METARL_DATA when it holds an imported Mini-ImageNet."""
    root = os.environ.get("METARL_DATA")
    if root and (Path(root) / "miniimagenet" / "84x84" / "train.json").is_file():
        return Path(root)
    return None


@pytest.fixture(scope="session")
def miniimagenet_root(tmp_path_factory) -> Path:
    """A data root holding Mini-ImageNet: the imported real one where $METARL_DATA has it,
    else the synthetic set of scripts/tools/make_synthetic_miniimagenet.py (the Ravi &
    Larochelle layout, 5 classes of 30 images per split) imported, so the Mini-ImageNet
    recipes run in every test run."""
    real = _real_miniimagenet_root()
    if real is not None:
        return real
    from metarl.data.miniimagenet import import_

    base = tmp_path_factory.mktemp("miniimagenet-synthetic")
    import_(_tool("make_synthetic_miniimagenet").write(base / "src"), base / "root", progress=False)
    return base / "root"
