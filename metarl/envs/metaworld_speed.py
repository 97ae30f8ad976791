"""Meta-World's two slowest lines of Python, computed the same way in a fraction of the time.

Meta-World's step is mostly Python, not physics, and a profile of it (docs/results/speed.md,
"Stepping Meta-World") puts these two first: `SawyerXYZEnv.touching_object` (two list
comprehensions that wrap every MuJoCo contact in a Python object, every step) and SciPy's
`Rotation.from_matrix(...).as_quat()` for the object's quaternion in the observation (most of
it SciPy validating that a 3x3 matrix is a rotation). They serve Meta-World's own env, which
runs the skills without a batched step (`metarl.envs.metaworld_vector`) and the reference
evaluator.

`use_fast_paths` swaps them for:

- `touching_object`: the same contact selection and force sums on MuJoCo's contact arrays
  (`data.contact.geom1`, `.geom2`, `.efc_address`) with NumPy masks.
- The quaternion: SciPy's own compiled conversion (`_rotation_cy.from_matrix`, the function
  `Rotation.from_matrix` ends in) called with `assume_valid=True` when the matrix is a proper
  rotation by a test stricter than SciPy's (`|M M^T - I| <= 1e-13` everywhere, det > 0); any
  other matrix goes through SciPy's public path unchanged. The numbers are SciPy's bit for bit.
  Where the installed SciPy has no such function (before 1.15), the quaternion stays SciPy's.

`tests/test_metaworld.py` checks both against the originals on every step of random-action
episodes (bitwise), and `scripts/benchmarks/bench_metaworld_step.py` measures the step with
and without them in one run. `use_fast_paths(False)` restores Meta-World's own code.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np

ORTHOGONALITY_ATOL = 1e-13
"""Ten times stricter than SciPy's tolerance on `M M^T - I` (1e-12 off the diagonal, more on
it), applied to every entry: a matrix that passes here passes SciPy's check too, whatever
the last-bit differences between these sums and NumPy's product, so SciPy would take it as it
is (no SVD re-orthogonalization) and convert it with the same function."""

_ORIGINALS: dict[str, Any] = {}


def touching_object(self: Any, object_geom_id: int) -> bool:
    """Meta-World's `SawyerXYZEnv.touching_object` on MuJoCo's contact arrays: whether both
    gripper pads touch the object with a positive summed contact force."""
    left = self.data.geom("leftpad_geom").id
    right = self.data.geom("rightpad_geom").id
    return contact_force_test(self.data, object_geom_id, left, right)


def contact_force_test(data: Any, object_geom_id: int, left: int, right: int) -> bool:
    """Whether the contacts of geom `left` and of geom `right` with the object each sum to a
    positive force in `data` (its contacts and `efc_force` current)."""
    contact = data.contact
    if len(contact.geom1) == 0:
        return False
    geom1, geom2 = contact.geom1, contact.geom2
    with_object = (geom1 == object_geom_id) | (geom2 == object_geom_id)
    force = data.efc_force
    address = contact.efc_address
    left_force = _ordered_sum(force[address[with_object & ((geom1 == left) | (geom2 == left))]])
    right_force = _ordered_sum(force[address[with_object & ((geom1 == right) | (geom2 == right))]])
    return bool(left_force > 0 and right_force > 0)


def _ordered_sum(values: np.ndarray) -> float:
    """Python's `sum` over the values in order (Meta-World's), not NumPy's pairwise sum."""
    total = 0.0
    for v in values.tolist():
        total += v
    return total


class _Quaternion:
    """What Meta-World uses of a SciPy `Rotation`: `from_matrix(m).as_quat()`."""

    __slots__ = ("_quat",)

    def __init__(self, quat: np.ndarray) -> None:
        self._quat = quat

    def as_quat(self) -> np.ndarray:
        return self._quat


class FastRotation:
    """Stands in for `scipy.spatial.transform.Rotation` inside Meta-World's env modules, which
    only call `Rotation.from_matrix(matrix).as_quat()` (checked: anything else is an
    AttributeError, not a silent difference)."""

    @staticmethod
    def from_matrix(matrix: Any) -> _Quaternion:
        compiled = compiled_from_matrix()
        m = np.asarray(matrix, dtype=np.float64)
        if compiled is not None and m.shape == (3, 3) and _is_rotation(m):
            return _Quaternion(np.asarray(compiled(m, assume_valid=True)))
        from scipy.spatial.transform import Rotation  # SciPy's whole check, then its SVD

        return _Quaternion(Rotation.from_matrix(matrix).as_quat())


@functools.cache
def compiled_from_matrix() -> Callable[..., Any] | None:
    """SciPy's compiled `from_matrix` (SciPy >= 1.15's `_rotation_cy`), or None where this
    SciPy has none or it disagrees with `Rotation.from_matrix` on a sample rotation: then
    the quaternion stays SciPy's public path."""
    from scipy.spatial.transform import Rotation

    try:
        from scipy.spatial.transform import _rotation_cy

        sample = Rotation.from_euler("xyz", [0.3, -1.2, 2.5]).as_matrix()
        got = np.asarray(_rotation_cy.from_matrix(sample, assume_valid=True))
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    if not np.array_equal(got, Rotation.from_matrix(sample).as_quat()):
        return None
    return _rotation_cy.from_matrix


def _is_rotation(m: np.ndarray) -> bool:
    """Orthogonal within `ORTHOGONALITY_ATOL` in every entry of `M M^T - I`, det > 0, in
    Python floats (NumPy's `det` alone took longer than the conversion)."""
    (a, b, c), (d, e, f), (g, h, i) = m.tolist()
    tol = ORTHOGONALITY_ATOL
    return (
        abs(a * a + b * b + c * c - 1.0) <= tol
        and abs(d * d + e * e + f * f - 1.0) <= tol
        and abs(g * g + h * h + i * i - 1.0) <= tol
        and abs(a * d + b * e + c * f) <= tol
        and abs(a * g + b * h + c * i) <= tol
        and abs(d * g + e * h + f * i) <= tol
        and a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g) > 0.0
    )


@functools.cache
def _env_modules() -> tuple[Any, ...]:
    """Meta-World's env modules that import SciPy's `Rotation` (found once: `use_fast_paths`
    runs on every `require_metaworld`, i.e. every env made)."""
    import metaworld.envs as envs
    from scipy.spatial.transform import Rotation

    found = []
    for info in pkgutil.iter_modules(envs.__path__, envs.__name__ + "."):
        module = importlib.import_module(info.name)
        if getattr(module, "Rotation", None) in (Rotation, FastRotation):
            found.append(module)
    return tuple(found)


def use_fast_paths(enabled: bool = True) -> None:
    """Install the two fast paths into Meta-World (or, with False, restore its own code).
    Idempotent; call after `metaworld` is importable."""
    from metaworld import sawyer_xyz_env
    from scipy.spatial.transform import Rotation

    base = sawyer_xyz_env.SawyerXYZEnv
    if base.touching_object is not touching_object:
        _ORIGINALS.setdefault("touching_object", base.touching_object)
    base.touching_object = (  # type: ignore[method-assign]
        touching_object if enabled else _ORIGINALS["touching_object"]
    )
    shim = FastRotation if enabled and compiled_from_matrix() is not None else Rotation
    for module in _env_modules():
        module.Rotation = shim


def original_touching_object() -> Any:
    """Meta-World's own `touching_object` (for the equivalence test and the benchmark)."""
    from metaworld import sawyer_xyz_env

    return _ORIGINALS.get("touching_object", sawyer_xyz_env.SawyerXYZEnv.touching_object)
