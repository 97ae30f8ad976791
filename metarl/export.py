"""Policies out to stable-baselines3 and back.

A meta-trained (or adapted) RL policy is SB3's own `MlpPolicy` with the same parameter names,
so it becomes a `stable_baselines3.PPO` zip as it is: `export_sb3` builds a PPO with the
run's `[learner]` settings on an env of the run's distribution, loads the policy's weights
and saves it (`PPO.load(path)` reads it; `model.learn(...)` fine-tunes it on one task with
plain SB3). `load_sb3_policy` reads such a zip's policy weights back as a parameter dict
(metarl's phi or an adapted policy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.errors import UserError
from metarl.protocol import Split

CPU = torch.device("cpu")


def export_sb3(run_dir: Path, out: Path) -> Path:
    """Write the meta-trained policy of the RL run `run_dir` as an SB3 PPO zip at `out`:
    what `metarl export RUN_DIR --out FILE.zip` does.

    Args:
        run_dir: A run directory of an RL recipe with an MLP policy (not RL²).
        out: The zip to write.

    Returns:
        `out`, which `stable_baselines3.PPO.load(out)` reads.

    Raises:
        UserError: `out` not a `.zip` or not writable, or the run not an MLP-policy RL run.
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from metarl.evaluate import load_run
    from metarl.rl.settings import rl_settings
    from metarl.run import check_writable

    if out.suffix != ".zip":
        raise UserError(f"--out {out}: expected a file name ending in .zip (SB3's format)")
    check_writable(out, "--out")
    if out.is_dir():  # SB3 would write OUT_2 beside it and say nothing
        raise UserError(f"--out {out}: is a directory; give the path of a .zip file to write")
    recipe, meta, _ = load_run(run_dir, CPU)
    if meta.dist.kind != "rl":
        raise UserError(
            f"{run_dir}: task {recipe.task_name!r} is not an RL task; only RL policies "
            "export to stable-baselines3"
        )
    if recipe.train.algorithm.value == "rl2":
        raise UserError(
            f"{run_dir}: an RL² run (algorithm = rl2): its GRU policy has no "
            "stable-baselines3 counterpart; only MLP policies export"
        )
    settings = rl_settings(recipe)
    dist: Any = meta.dist
    task = dist.sample(1, np.random.default_rng(0), Split.TRAIN)[0]
    env = DummyVecEnv([lambda: dist.make_env(task)])
    ppo = PPO(
        "MlpPolicy",
        env,
        **settings.ppo_kwargs(recipe.train.inner_lr, env.action_space),
        device=CPU,
        verbose=0,
    )
    ppo.policy.load_state_dict(meta.model.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    ppo.save(out)
    env.close()
    return out


def load_sb3_policy(path: Path) -> dict[str, torch.Tensor]:
    """The policy parameters of an SB3 PPO zip (SB3's names: metarl's phi layout).

    Args:
        path: A zip written by `export_sb3` or by SB3's own `PPO.save`.

    Returns:
        The parameters by name, on the CPU, detached.

    Raises:
        UserError: No such file.
    """
    from stable_baselines3 import PPO

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    ppo = PPO.load(path, device=CPU)
    return {k: v.detach().clone() for k, v in ppo.policy.named_parameters()}


__all__ = ["export_sb3", "load_sb3_policy"]
