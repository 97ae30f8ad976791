"""metarl: meta-learning for PyTorch (Reptile, first-order MAML, MAML, Meta-SGD and iMAML).

Learns an initialization that adapts fast to new tasks: few-shot supervised problems and
families of parametrized Gymnasium environments (Reptile and first-order MAML; the others on
supervised tasks).
"""

__version__ = "0.1.0"

import metarl.envs  # noqa: E402, F401  (registers the metarl/ Gymnasium envs)
from metarl.registry import make_distribution, register_task  # noqa: E402
from metarl.zoo import pretrained  # noqa: E402

__all__ = ["__version__", "make_distribution", "pretrained", "register_task"]
