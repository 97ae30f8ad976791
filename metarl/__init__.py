"""metarl: meta-learning for PyTorch (Reptile, first-order MAML, MAML, Meta-SGD and iMAML).

Learns an initialization that adapts fast to new tasks: few-shot supervised problems and
families of parametrized Gymnasium environments (Reptile and first-order MAML; the others on
supervised tasks).

Examples:
    >>> import metarl
    >>> sine = metarl.make_distribution("sine")
    >>> sine.kind, sine.metric
    ('supervised', 'mse')
"""

# First: Ctrl-C while `metarl ...` starts is one line and exit code 130 (metarl/startup.py).
# Until that module has said whether this process is the command line, a SIGINT is held.
import _signal

_held: list[int] = []
_at_start = _signal.getsignal(_signal.SIGINT)
if _at_start is _signal.default_int_handler:
    try:
        _signal.signal(_signal.SIGINT, lambda signum, frame: _held.append(signum))
    except ValueError:  # imported outside the main thread: signals are not ours to set
        _at_start = None

from metarl.startup import quiet_while_starting  # noqa: E402

quiet_while_starting(_at_start, _held)

from typing import TYPE_CHECKING  # noqa: E402

__version__ = "0.1.0"

import metarl.envs  # noqa: E402, F401  (registers the metarl/ Gymnasium envs)
from metarl.registry import make_distribution, register_task  # noqa: E402

__all__ = ["__version__", "make_distribution", "pretrained", "register_task"]

if TYPE_CHECKING:  # for type checkers and the API reference; at run time, `__getattr__`
    from metarl.zoo import pretrained


def __getattr__(name: str) -> object:
    """`metarl.pretrained`, imported on first use: it needs torch, which `import metarl` (and
    so `metarl --help` or `metarl tasks list`) does not wait for."""
    if name == "pretrained":
        from metarl.zoo import pretrained

        return pretrained
    raise AttributeError(f"module 'metarl' has no attribute {name!r}")
