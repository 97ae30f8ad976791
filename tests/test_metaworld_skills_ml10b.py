"""Branches of the batched peg-insert-side and shelf-place rewards that Meta-World's expert
never reaches, stepped against Meta-World's own env bit for bit
(`tests/test_metaworld_vector.py` covers random and expert episodes of every skill).

Both are where Meta-World's reward turns from float32 back to float64 because a NumPy
float64 enters the sum, not a Python float: peg-insert-side with the peg's head inside a
collision prism of the box (`rect_prism_tolerance`), shelf-place with the block carried low
in front of the shelf (the bound loss, through `np.clip`). The expert lifts both objects clear
first, so these episodes bend its path: the peg is dragged along the table into the box, the
block carried low toward the shelf.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None, reason="Meta-World not installed"
)


def _bent_expert(skill: str, goals: np.ndarray, first: np.ndarray, bend):
    """Meta-World's expert for `skill` (seeing the goal), its hand moves replaced by
    `bend(obs, first_obs, action)` where that returns a target position (else None)."""
    import metaworld.policies as policies

    expert = policies.ENV_POLICY_MAP[skill]()

    def act(obs, t):
        seen = (first if obs is None else obs).copy()
        seen[:, 36:39] = goals
        actions = []
        for o, f in zip(seen, first, strict=True):
            a = expert.get_action(o)
            target = bend(o, f, a)
            if target is not None:
                a[:3] = np.clip((target - o[:3]) * 10, -1, 1)
            actions.append(a)
        return np.stack(actions).astype(np.float32)

    return act


def _drag_peg(o: np.ndarray, f: np.ndarray, a: np.ndarray) -> np.ndarray | None:
    """Once the gripper closes on the peg, drag it at table height toward the box."""
    hand, peg = o[:3], o[4:7]
    if a[3] > 0 and abs(hand[2] - peg[2]) < 0.03:
        return np.array([-0.35, o[37], peg[2]])
    return None


def _carry_block_low(o: np.ndarray, f: np.ndarray, a: np.ndarray) -> np.ndarray | None:
    """Once the block is off the table, carry it 5 cm high toward the shelf's goal."""
    if o[6] > f[6] + 0.015:
        return np.array([o[36], o[37], 0.05])
    return None


@pytest.mark.parametrize(
    ("skill", "bend"),
    [("peg-insert-side-v3", _drag_peg), ("shelf-place-v3", _carry_block_low)],
    ids=["peg-head-in-collision-prism", "shelf-block-carried-low"],
)
def test_the_batched_step_is_metaworlds_where_the_expert_never_goes(skill, bend):
    from tests.test_metaworld_vector import _both, _compare

    vec, own, goals, first = _both(skill)
    try:
        _compare(vec, own, _bent_expert(skill, goals, first, bend))
    finally:
        vec.close()
