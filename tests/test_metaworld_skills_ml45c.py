"""What the whole-episode comparison of `tests/test_metaworld_vector.py` does not reach in the
batched bin-picking reward: its in-place margin is the distance of each episode's first step
(Meta-World sets `_target_to_obj_init` in the reward), so a new episode on other tasks must
take its own, not keep the last one's.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None, reason="Meta-World not installed"
)


def _steps(vec, own, rng: np.random.Generator, n: int) -> None:
    for step in range(n):
        actions = rng.uniform(-1, 1, (len(own), 4)).astype(np.float32)
        _, reward, _, info = vec.step_float64(actions)
        want = [env.step(actions[i]) for i, env in enumerate(own)]
        np.testing.assert_array_equal(reward, [float(w[1]) for w in want], err_msg=str(step))
        for key in ("in_place_reward", "obj_to_target", "grasp_reward"):
            np.testing.assert_array_equal(
                info[key], [float(w[4][key]) for w in want], err_msg=f"{key} at {step}"
            )


def test_bin_picking_takes_the_margin_of_each_episodes_first_step():
    from metarl.envs.metaworld import MetaWorldTask
    from tests.test_metaworld_vector import ENVS_PER_TASK, TASKS, _both

    vec, own, _, _ = _both("bin-picking-v3")
    rng = np.random.default_rng(4)
    try:
        _steps(vec, own, rng, 30)
        tasks = [
            MetaWorldTask("ML1", "bin-picking-v3", "train", 7 * i + 3, 0) for i in range(TASKS)
        ]
        vec.set_tasks([t.to_dict() for t in tasks])
        vec.reset()
        margins = []
        for i, env in enumerate(own):
            margins.append(env._target_to_obj_init)
            env.set_task(tasks[i // ENVS_PER_TASK].resolve())
            env.reset()
        _steps(vec, own, rng, 30)
        assert [env._target_to_obj_init for env in own] != margins
    finally:
        vec.close()
