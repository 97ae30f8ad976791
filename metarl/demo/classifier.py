"""One-shot classification of drawings: adapt a meta-trained Omniglot network to N drawings
(one per class) with the recipe's evaluation inner loop, then classify a query drawing.

This is `metarl eval`'s code path for one task: the same `InnerLoop` built by `build_inner_loop`
with the recipe's `[eval]` (eval.inner_lr, eval.inner_batch, the recipe's inner optimizer), and
the same non-transductive prediction (`predict_each_with_support`): BatchNorm normalizes with the
statistics of the support set plus the one query drawing. Transductive prediction would put
the query alone in its batch, and BatchNorm over a single image normalizes each feature map
by its own spatial statistics (2x2 positions in the last block), which is no evaluation mode
the network was meant for.

A network trained for W-way tasks classifies N <= W classes with the first N rows of its
output layer: Reptile assigns labels to classes at random in every task, so the W rows are
interchangeable and any N of them make an N-way classifier.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metarl.config import Recipe
from metarl.errors import UserError
from metarl.learners.inner_loop import InnerLoop, build_inner_loop
from metarl.models import WithLearnedRates
from metarl.protocol import Params, TaskBatch

MIN_WAYS = 2
MAX_WAYS = 5
MAX_STEPS = 200
"""More steps than the recipes evaluate with (50), and still about a second on a CPU."""


@dataclass(frozen=True)
class Prediction:
    probabilities: list[float]
    """Softmax over the N classes, in the order of the support drawings."""
    steps: int
    seconds: float
    """Wall time of adaptation and prediction."""


class FewShotClassifier:
    """Adapts `model` (meta-trained with `recipe`) to one task of N support drawings.

    Args:
        recipe: the recipe the model was meta-trained with (its evaluation inner loop is used).
        model: the network holding the meta-trained weights.
        device: where adaptation runs.
    """

    def __init__(self, recipe: Recipe, model: nn.Module, device: torch.device) -> None:
        self.recipe = recipe
        self.device = device
        self.model = model.to(device)
        params = {k: v.detach() for k, v in self.model.named_parameters()}
        self.phi: Params = params
        self.rates: Params | None = None  # Meta-SGD's learned per-parameter rates
        if isinstance(self.model, WithLearnedRates):
            self.phi, self.rates = self.model.split(params)
        linear = [name for name, m in self.model.named_modules() if isinstance(m, nn.Linear)]
        self.head = (f"{linear[-1]}.weight", f"{linear[-1]}.bias")
        self.ways = int(self.phi[self.head[0]].shape[0])
        self.max_ways = min(MAX_WAYS, self.ways)
        self.default_steps = max(recipe.eval.steps)
        self.loops: dict[int, InnerLoop] = {}

    def phi_for(self, n: int) -> Params:
        """phi with the output layer cut to its first `n` rows (an n-way classifier)."""
        return self._cut(self.phi, n)

    def _cut(self, params: Params, n: int) -> Params:
        return {k: v[:n] if k in self.head else v for k, v in params.items()}

    def learner(self, n: int) -> InnerLoop:
        """The evaluation inner loop of an `n`-way task; Meta-SGD's rates are cut like phi,
        so each n has its own loop (built once)."""
        if n not in self.loops:
            self.loops[n] = build_inner_loop(
                self.model,
                "cross_entropy",
                self.recipe.supervised_settings(),
                self.recipe.eval_inner_lr,
                self.recipe.supervised_eval().inner_batch,
                None if self.rates is None else self._cut(self.rates, n),
            )
        return self.loops[n]

    def classify(self, support: np.ndarray, query: np.ndarray, steps: int) -> Prediction:
        """Probabilities of `query` (`uint8 [28, 28]`, strokes bright) for each class of
        `support` (`uint8 [N, 28, 28]`, drawing i is class i) after `steps` inner steps."""
        n = support.shape[0]
        if not MIN_WAYS <= n <= self.max_ways:
            raise ValueError(f"{n} classes: expected {MIN_WAYS} to {self.max_ways}")
        start = time.perf_counter()
        sx = torch.from_numpy(np.ascontiguousarray(support)).to(self.device)
        sx = sx.float().div(255.0).view(1, n, 1, *support.shape[1:])
        sy = torch.arange(n, device=self.device).view(1, n)
        qx = torch.from_numpy(np.ascontiguousarray(query)).to(self.device)
        qx = qx.float().div(255.0).view(1, 1, 1, *query.shape)
        batch = TaskBatch(sx, sy, qx, torch.zeros(1, 1, dtype=torch.long, device=self.device))
        learner = self.learner(n)
        params = learner.adapt(self.phi_for(n), batch, steps)
        logits = learner.predict_each_with_support(params, sx, qx)[0, 0]
        probs = torch.softmax(logits.float(), dim=-1).cpu().tolist()
        return Prediction(probs, steps, time.perf_counter() - start)


def from_pretrained(name: str, device: torch.device) -> tuple[FewShotClassifier, dict[str, str]]:
    """The classifier of a shipped model (`metarl.zoo`) and what the page says about it."""
    from metarl import zoo

    model = zoo.pretrained(name, device)
    info = model.provenance
    about = (
        f"{info.get('algorithm', 'reptile')}, {info.get('meta_iterations', '?')} meta-iterations"
    )
    accuracy = info.get("accuracy", {}).get("non_transductive")
    if accuracy:
        about += (
            f"; Omniglot test split, {info.get('ways', '?')}-way 1-shot: "
            f"{100 * accuracy['mean']:.1f}% after {accuracy['steps']} steps "
            f"(non-transductive, {accuracy['tasks']} tasks)"
        )
    return FewShotClassifier(model.recipe, model.model, device), {
        "model": f"pretrained:{name}",
        "about": about + ".",
    }


def from_run(path: Path, device: torch.device) -> tuple[FewShotClassifier, dict[str, str]]:
    """The classifier of a run directory meta-trained on Omniglot."""
    from metarl import zoo
    from metarl.run import RunDir

    run = RunDir.open(path)
    recipe = run.recipe()
    if recipe.task_name != "omniglot":
        raise UserError(
            f"--run {path}: its task is {recipe.task_name!r}; the demo needs an omniglot run"
        )
    model = zoo.build_model(recipe)
    checkpoint = run.load_checkpoint("cpu")
    model.load_state_dict(checkpoint.model)
    about = f"{recipe.train.algorithm.value}, {checkpoint.iteration} meta-iterations"
    return FewShotClassifier(recipe, model, device), {"model": str(path), "about": about + "."}
