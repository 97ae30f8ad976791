"""The batched RL learner: vector envs, the policy, GAE and PPO against SB3, VPG by hand,
learning, determinism and the catalog recipes on both backends."""

from __future__ import annotations

import copy
import warnings

import gymnasium
import numpy as np
import pytest
import torch

from metarl.config import recipe_from_dict
from metarl.envs.navigation import oracle_action
from metarl.envs.vector import Navigation2DVector, ProtocolVectorEnv, make_task_vector_env
from metarl.errors import ConfigError
from metarl.learners import build_meta_learner
from metarl.learners.batched_rl import BatchedRLMetaLearner
from metarl.learners.inner_loop import stack
from metarl.learners.sb3_ppo import SB3MetaLearner, SeededRolloutBuffer
from metarl.registry import make_distribution, resolve_recipe
from metarl.rl.batched_ppo import PPOBatch
from metarl.rl.rollout import Rollout, RolloutNoise, collect, gae
from metarl.rl.vpg import baseline_features, discounted_returns, fit_baseline, vpg_gradient
from metarl.train import MetaTrainer
from tests.test_run import whole_and_resumed

CPU = torch.device("cpu")


def nav_recipe(train=None, learner=None, eval_=None):
    data = {
        "task": {"name": "navigation2d"},
        "train": {"inner_steps": 2, "inner_lr": 0.003, "meta_batch": 4, "meta_step": 0.5},
        "learner": {
            "n_steps": 100,
            "n_envs": 4,
            "batch_size": 100,
            "n_epochs": 4,
            "log_std_init": -1.5,
        },
        "eval": {"tasks": 4, "steps": [0, 1]},
    }
    data["train"].update(train or {})
    data["learner"].update(learner or {})
    data["eval"].update(eval_ or {})
    return recipe_from_dict(data, "test")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """SB3's side runs on one thread too (tiny ops; threads only add hand-offs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def meta() -> BatchedRLMetaLearner:
    learner = build_meta_learner(nav_recipe(), CPU)
    assert isinstance(learner, BatchedRLMetaLearner)
    return learner


# -- vector envs ---------------------------------------------------------------------------
def test_navigation_vector_env_equals_the_single_env_step_for_step():
    dist = make_distribution("navigation2d")
    tasks = dist.sample(3, np.random.default_rng(0))
    vector = make_task_vector_env(dist, tasks, 2)
    assert isinstance(vector, Navigation2DVector) and vector.num_envs == 6
    singles = [gymnasium.make("metarl/Navigation2D-v0") for _ in range(6)]
    goals = [t.params["goal"] for t in tasks for _ in range(2)]
    obs, _ = vector.reset(seed=[1, 2, 3, 4, 5, 6])
    single_obs = [
        env.reset(seed=i, options={"task": {"goal": g}})[0]
        for i, (env, g) in enumerate(zip(singles, goals, strict=True))
    ]
    rng = np.random.default_rng(1)
    ends = {"terminated": 0, "truncated": 0}
    for step in range(200):
        # random moves past the time limit (truncation), then the oracle (termination)
        actions = np.stack(
            [
                oracle_action(o, g) if step >= 110 else rng.uniform(-0.15, 0.15, 2)
                for o, g in zip(single_obs, goals, strict=True)
            ]
        ).astype(np.float32)
        obs, rewards, terminated, truncated, infos = vector.step(actions)
        for i, env in enumerate(singles):
            o, r, term, trunc, _ = env.step(actions[i])
            assert r == rewards[i] and term == terminated[i] and trunc == truncated[i], step
            if term or trunc:
                assert infos["_final_obs"][i] and np.array_equal(infos["final_obs"][i], o)
                o, _ = env.reset()
                ends["terminated" if term else "truncated"] += 1
            assert np.array_equal(o, obs[i]), step
            single_obs[i] = o
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


def test_protocol_vector_env_steps_the_distributions_envs():
    dist = make_distribution("navigation2d")
    tasks = dist.sample(2, np.random.default_rng(3))
    native, generic = Navigation2DVector(2, 3), ProtocolVectorEnv(dist, tasks, 3)
    native.set_tasks([t.params for t in tasks])
    native.reset(seed=0)
    generic.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(120):
        a = rng.uniform(-0.1, 0.1, (6, 2)).astype(np.float32)
        for x, y in zip(native.step(a)[:4], generic.step(a)[:4], strict=True):
            assert np.array_equal(x, y)
    with pytest.raises(ValueError, match="3 tasks for 2 task slots"):
        generic.set_tasks(tasks + tasks[:1])


# -- the policy and the PPO update against SB3 -----------------------------------------------
@pytest.fixture(scope="module")
def sb3() -> SB3MetaLearner:
    # 150 x 2 samples in minibatches of 64: the last one is short, on purpose (SB3 warns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learner = build_meta_learner(
            nav_recipe(learner={"backend": "sb3", "n_steps": 150, "n_envs": 2, "batch_size": 64}),
            CPU,
        )
    assert isinstance(learner, SB3MetaLearner)
    return learner


def sb3_policy_with(model, weights):
    """A copy of SB3's policy holding `weights` (the reference runs SB3's own code)."""
    policy = copy.deepcopy(model)
    policy.load_state_dict(weights, strict=False)
    return policy


def test_initialization_and_forward_are_sb3s(meta, sb3):
    # same recipe seed, same SB3 MlpPolicy weights and names
    assert meta.names == sb3.names
    for n, p in sb3.model.named_parameters():
        assert torch.equal(meta.phi()[n], p.detach()), n
    # per-task weights: the batched forward equals SB3's own policy run on each task's weights
    params = {k: v + 0.1 * torch.randn_like(v) for k, v in stack(sb3.phi(), 3).items()}
    obs, actions = torch.randn(3, 7, 2), torch.randn(3, 7, 2)
    out, values = meta.policy.heads(params, obs)
    log_prob, entropy = meta.policy.log_prob_entropy(params, out, actions)
    for i in range(3):
        reference = sb3_policy_with(sb3.model, {k: v[i] for k, v in params.items()})
        with torch.no_grad():
            v_ref, lp_ref, ent_ref = reference.evaluate_actions(obs[i], actions[i])
        torch.testing.assert_close(values[i], v_ref.flatten())
        torch.testing.assert_close(log_prob[i], lp_ref)
        torch.testing.assert_close(entropy[i], ent_ref)


def test_gae_and_ppo_update_equal_sb3s_on_one_task(meta, sb3):
    """SB3 collects a rollout (150 steps x 2 envs: a time-limit bootstrap at step 100) and
    trains on it; the batched GAE and update, given the same rollout and minibatch order
    (the last minibatch is short), give the same advantages and parameters."""
    phi = {k: v + 0.05 * torch.randn_like(v) for k, v in sb3.phi().items()}
    task = sb3.dist.sample(1, np.random.default_rng(4))[0]
    lr = 0.01
    sb3.run_task(phi, task, seed=5, updates=0, measure=(), extra_rollout=True, lr=lr)
    ppo, buffer = sb3.ppo, sb3.ppo.rollout_buffer
    assert isinstance(buffer, SeededRolloutBuffer)

    def tasks_envs_time(x):  # SB3's [time, envs, ...] -> [1, envs, time, ...]
        return torch.as_tensor(np.swapaxes(x, 0, 1)).unsqueeze(0).float()

    dones = np.concatenate([buffer.episode_starts[1:], ppo._last_episode_starts[None]])
    with torch.no_grad():
        last_values = sb3.policy.predict_values(torch.as_tensor(ppo._last_obs)).flatten()
    advantages, returns = gae(
        tasks_envs_time(buffer.rewards),
        tasks_envs_time(buffer.values),
        tasks_envs_time(dones).bool(),
        last_values.unsqueeze(0),
        ppo.gamma,
        ppo.gae_lambda,
    )
    torch.testing.assert_close(advantages, tasks_envs_time(buffer.advantages))
    torch.testing.assert_close(returns, tasks_envs_time(buffer.returns))

    def flat(x):
        return x.reshape(1, -1, *x.shape[3:])

    batch = PPOBatch(
        flat(tasks_envs_time(buffer.observations)),
        flat(tasks_envs_time(buffer.actions)),
        flat(tasks_envs_time(buffer.log_probs)),
        flat(advantages),
        flat(returns),
    )
    rng = np.random.default_rng(77)
    orders = torch.as_tensor(np.stack([rng.permutation(300) for _ in range(ppo.n_epochs)]))
    buffer.rng = np.random.default_rng(77)
    inner = meta._inner(lr)
    inner.ppo.batch_size, inner.ppo.n_epochs = ppo.batch_size, ppo.n_epochs
    params = stack(phi, 1)
    ours, _ = inner.ppo.update(params, batch, orders.unsqueeze(1), inner.ppo.init(params))
    ppo.train()
    for n, p in sb3.policy.named_parameters():
        # 10 epochs of minibatch steps: float32 sums whose vectorized order depends on the
        # buffers' alignment drift by up to ~6e-6 between runs of the same code (1 run in 4)
        torch.testing.assert_close(
            ours[n][0], p.detach(), rtol=1e-4, atol=2e-5, msg=lambda m, n=n: f"{n}: {m}"
        )
    assert not torch.allclose(ours["action_net.weight"][0], phi["action_net.weight"])


def test_rollout_bootstraps_timeouts_with_the_value_of_the_final_observation(meta):
    phi = meta.phi()
    task = meta.dist.sample(1, np.random.default_rng(0))
    env = meta._env(task)
    rollout = _collect(meta, phi, env, seeds=[3], index=0, steps=130)
    assert rollout.obs.shape == (1, 4, 130, 2) and rollout.dones[0, :, 99].all()
    final = rollout.obs[0, :, 99] + rollout.actions[0, :, 99].clamp(-0.1, 0.1)
    reference = sb3_policy_with(meta.model, phi)
    with torch.no_grad():
        expected = meta.settings.gamma * reference.predict_values(final).flatten()
    torch.testing.assert_close(rollout.bootstrap[0, :, 99], expected)
    assert torch.count_nonzero(rollout.bootstrap) == 4
    assert torch.equal(rollout.obs[0, :, 100], torch.zeros(4, 2))  # fresh episodes
    assert rollout.first_episode[0, :, :100].all() and not rollout.first_episode[0, :, 100:].any()


def _collect(meta, params, env, seeds, index, steps) -> Rollout:
    return collect(
        meta.policy,
        stack(params, len(seeds)),
        env,
        RolloutNoise(seeds, index),
        steps,
        meta.settings.gamma,
    )


# -- MAML-RL's policy gradient ---------------------------------------------------------------
def test_vpg_baseline_and_gradient_equal_a_hand_computation(meta):
    """Two episodes of one task (the second ends after 6 of 10 steps): the returns-to-go,
    the ridge fit, the normalized advantages and the REINFORCE gradient, computed here step
    by step."""
    gamma, steps = 0.9, 10
    gen = torch.Generator().manual_seed(0)
    obs = torch.rand(1, 2, steps, 2, generator=gen) - 0.5
    actions = 0.1 * torch.randn(1, 2, steps, 2, generator=gen)
    rewards = -torch.rand(1, 2, steps, generator=gen)
    mask = torch.ones(1, 2, steps)
    mask[0, 1, 6:] = 0
    zeros = torch.zeros_like(rewards)
    rollout = Rollout(
        obs, actions, zeros, zeros, rewards, zeros, zeros.bool(), zeros[..., 0], mask,
        np.zeros(1), np.zeros(1),
    )  # fmt: skip
    returns = discounted_returns(rewards, mask, gamma)
    r = rewards[0].double()
    assert float(returns[0, 0, 7]) == pytest.approx(
        float(r[0, 7] + gamma * r[0, 8] + gamma**2 * r[0, 9])
    )
    assert float(returns[0, 1, 4]) == pytest.approx(float(r[1, 4] + gamma * r[1, 5]))
    assert float(returns[0, 1, 7]) == 0.0

    valid = [(0, t) for t in range(steps)] + [(1, t) for t in range(6)]
    rows, targets = [], []
    for e, t in valid:
        o, s = obs[0, e, t].double().numpy(), t / 100
        rows.append([*o, *(o**2), s, s**2, s**3, 1.0])
        targets.append(float(returns[0, e, t]))
    x, y = np.array(rows), np.array(targets)
    coeffs = np.linalg.solve(x.T @ x + 1e-5 * np.eye(8), x.T @ y)
    fitted = fit_baseline(baseline_features(obs, mask), returns)
    np.testing.assert_allclose(fitted[0].numpy(), coeffs, rtol=1e-4, atol=1e-4)

    advantages = y - x @ coeffs
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    phi = {k: v + 0.1 * torch.randn_like(v) for k, v in meta.phi().items()}
    reference = sb3_policy_with(meta.model, phi)
    per_episode: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    for (e, t), a in zip(valid, advantages, strict=True):
        _, log_prob, _ = reference.evaluate_actions(obs[0, e, t][None], actions[0, e, t][None])
        per_episode[e].append(log_prob[0] * float(a))
    loss = -torch.stack([torch.stack(v).mean() for v in per_episode.values()]).mean()
    loss.backward()
    grads, losses = vpg_gradient(meta.policy, stack(phi, 1), rollout, gamma)
    assert float(losses[0]) == pytest.approx(float(loss.detach()), rel=1e-4)
    for n, p in reference.named_parameters():
        expected_grad = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(grads[n][0], expected_grad, rtol=1e-3, atol=1e-5, msg=n)
    assert float(grads["action_net.weight"].abs().sum()) > 0


# -- the meta-learner --------------------------------------------------------------------------
def test_adaptation_improves_the_return_for_every_inner_algorithm(meta):
    tasks = meta.dist.sample(4, np.random.default_rng(5))
    ppo = meta.run(meta.phi(), tasks, [1, 2, 3, 4], 4, measure=(0, 4))
    # deterministic (seeded); from about -75 to about -45 in practice
    assert ppo.returns[4].mean() > ppo.returns[0].mean() + 10, ppo.returns
    vpg = build_meta_learner(
        nav_recipe(train={"inner_lr": 0.1}, learner={"inner": "vpg", "n_envs": 20}), CPU
    )
    assert isinstance(vpg, BatchedRLMetaLearner)
    run = vpg.run(vpg.phi(), tasks, [1, 2, 3, 4], 3, measure=(0, 3))
    assert run.returns[3].mean() > run.returns[0].mean() + 5, run.returns
    for n, p in meta.model.named_parameters():  # phi itself is untouched
        assert torch.equal(p, meta.phi()[n]), n


def test_adaptation_is_a_function_of_phi_task_and_seed_whatever_the_slot_split(meta):
    phi, batch = meta.phi(), meta.dist.sample(4, np.random.default_rng(0))
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    whole = meta.adapt(phi, batch, np.random.default_rng(7))
    again = meta.adapt(phi, batch, np.random.default_rng(7))
    other = meta.adapt(phi, batch, np.random.default_rng(8))
    parts = [meta.adapt(phi, batch, np.random.default_rng(7), slice(a, a + 2)) for a in (0, 2)]
    for n in phi:
        assert torch.equal(whole.params[n], again.params[n]), n
        torch.testing.assert_close(
            whole.params[n], torch.cat([p.params[n] for p in parts]), rtol=0, atol=1e-6
        )
    assert any(not torch.equal(whole.params[n], other.params[n]) for n in phi)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    grads, metrics = meta.query_gradient(whole)
    assert {n: g.shape for n, g in grads.items()} == {n: p.shape for n, p in phi.items()}
    assert float(grads["action_net.weight"].abs().sum()) > 0
    assert np.isfinite(metrics["query_loss"]) and metrics["query_env_steps"] == 4 * 4 * 100


def test_bad_learner_settings_name_the_value():
    with pytest.raises(ConfigError, match="learner.inner = 'trpo': expected one of ppo, vpg"):
        build_meta_learner(nav_recipe(learner={"inner": "trpo"}), CPU)
    with pytest.raises(ConfigError, match="learner.backend = 'jax'"):
        build_meta_learner(nav_recipe(learner={"backend": "jax"}), CPU)
    with pytest.raises(ConfigError, match="unknown key 'inner'"):
        build_meta_learner(nav_recipe(learner={"backend": "sb3", "inner": "vpg"}), CPU)


@pytest.mark.parametrize("backend", ["batched", "sb3"])
def test_the_catalog_recipe_trains_one_iteration_on_either_backend(tmp_path, backend):
    recipe = resolve_recipe("navigation2d")
    data = recipe.to_dict()
    data["train"].update(meta_iterations=1, meta_batch=2, inner_steps=1)
    data["learner"].update(backend=backend, n_steps=100)
    recipe = recipe_from_dict(data, "navigation2d")
    trainer = MetaTrainer.start(recipe, tmp_path / backend, CPU)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    assert (tmp_path / backend / "metrics.jsonl").read_text().count("\n") == 1
    assert not torch.equal(
        before["action_net.weight"], trainer.model.state_dict()["action_net.weight"]
    )
    assert np.isfinite(trainer.history[-1]["return_before"])


@pytest.mark.parametrize("inner", ["ppo", "vpg"])
def test_fomaml_interrupt_and_resume_give_the_same_policy(tmp_path, inner):

    recipe = nav_recipe(
        train={"algorithm": "fomaml", "meta_iterations": 3, "inner_steps": 1, "log_every": 1},
        learner={"inner": inner, "n_epochs": 2},
    )
    whole_and_resumed(recipe, tmp_path, 2)


def test_curve_adapts_the_held_out_tasks_at_once(meta):
    curve = meta.curve([0, 1], 3)
    assert curve.steps == [0, 1] and curve.per_task.shape == (2, 3)
    tasks, _ = meta.eval_tasks(3)
    again = meta.curve([1], 3)
    np.testing.assert_array_equal(again.per_task[0], curve.per_task[1])
    assert len(tasks) == 3


def test_evaluation_reports_progress_rollout_by_rollout(meta, sb3):
    """An RL evaluation is long (every held-out task's rollouts): it reports how far it is,
    in tasks, after every rollout (batched) or task (SB3), ending at the total, and the
    curve is the one it gives without a listener."""
    for learner, calls_at_least in ((meta, 3), (sb3, 3)):
        heard: list[tuple[float, float]] = []

        def listen(done: float, total: float, heard: list = heard) -> None:
            heard.append((done, total))

        curves = learner.curves([0, 2], 3, progress=listen)
        assert len(heard) >= calls_at_least
        done = [d for d, _ in heard]
        assert all(t == 3 for _, t in heard) and done == sorted(done)
        assert done[-1] == pytest.approx(3.0)
        quiet = learner.curves([0, 2], 3)
        np.testing.assert_array_equal(curves["return"].per_task, quiet["return"].per_task)


def test_a_family_without_a_native_vector_env_and_discrete_actions_adapts(tmp_path):
    """CartPolePhysics: `make_env` envs in a SyncVectorEnv, a categorical policy."""
    recipe = resolve_recipe("cartpole-physics")
    data = recipe.to_dict()
    data["learner"].update(n_steps=100, n_envs=2, batch_size=50)
    meta = build_meta_learner(recipe_from_dict(data, "cartpole"), CPU)
    assert isinstance(meta, BatchedRLMetaLearner) and meta.policy.discrete
    tasks = meta.dist.sample(3, np.random.default_rng(0))
    run = meta.run(meta.phi(), tasks, [1, 2, 3], 3, measure=(0, 3))
    assert isinstance(meta._envs[3], ProtocolVectorEnv)
    assert run.returns[3].mean() > run.returns[0].mean(), run.returns


def test_export_to_sb3_and_back(tmp_path):
    from stable_baselines3 import PPO
    from typer.testing import CliRunner

    from metarl.cli import app
    from metarl.export import load_sb3_policy

    run = tmp_path / "run"
    MetaTrainer.start(nav_recipe(train={"meta_iterations": 1, "inner_steps": 1}), run, CPU).fit()
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "policy.zip")])
    assert result.exit_code == 0, result.output
    ppo = PPO.load(tmp_path / "policy.zip", device="cpu")
    trained = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    back = load_sb3_policy(tmp_path / "policy.zip")
    assert set(back) == set(trained)
    for n, p in ppo.policy.named_parameters():
        assert torch.equal(p.detach(), trained[n]) and torch.equal(back[n], trained[n]), n
    action, _ = ppo.predict(np.zeros(2, np.float32), deterministic=True)
    assert action.shape == (2,)
    bad = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "policy.pt")])
    assert bad.exit_code == 2 and "expected a file name ending in .zip" in bad.stderr


class Corridor(gymnasium.Env):
    """A user's env with a task parameter and no `set_task`: walk to a target on a line."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-0.1, 0.1, (1,), np.float32)

    def __init__(self, target: float) -> None:
        self.target = target

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = 0.0, 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += float(np.clip(action[0], -0.1, 0.1))
        self.t += 1
        return np.array([self.x], np.float32), -abs(self.x - self.target), False, self.t >= 20, {}


class Target(dict):
    def to_dict(self):
        return dict(self)


class Corridors:
    kind = "rl"

    def sample(self, n, rng, split="train"):
        return [Target(target=float(x)) for x in rng.uniform(-1, 1, n)]

    def make_env(self, task):
        return Corridor(task["target"])


@pytest.mark.parametrize("backend", ["batched", "sb3"])
def test_a_custom_rl_distribution_trains_on_either_backend(tmp_path, backend):
    """Only `sample` and `make_env`: both backends build and retask envs through them."""
    import metarl
    from metarl.registry import _REGISTRY

    metarl.register_task("corridors-test", Corridors)
    try:
        recipe = recipe_from_dict(
            {
                "task": {"name": "corridors-test"},
                "train": {"meta_iterations": 2, "meta_batch": 2, "inner_steps": 1},
                "learner": {"backend": backend, "n_steps": 40, "n_envs": 2, "batch_size": 40},
                "eval": {"tasks": 2, "steps": [0, 1]},
            },
            "test",
        )
        trainer = MetaTrainer.start(recipe, tmp_path / backend, CPU)
        trainer.fit()
        curve = trainer.meta.curve([0, 1], 2)
    finally:
        _REGISTRY.pop("corridors-test", None)
    assert trainer.iteration == 2 and np.isfinite(curve.mean).all()


def test_evaluation_bounds_heavy_envs_and_releases_what_it_built(one_thread):
    """Held-out tasks are adapted `EVAL_CHUNK` at a time, fewer where the distribution says
    its envs are heavy (Meta-World: 16 tasks of 10 episodes, ~4 GB, where 64 were ~17 GB);
    the envs an evaluation builds are closed when it ends (an `eval` of several runs held
    every run's set and was killed for memory), the training's are kept."""
    from metarl.envs.metaworld import MetaWorldDistribution
    from metarl.learners.rl_core import EVAL_CHUNK, eval_chunk

    assert eval_chunk(object(), 10) == EVAL_CHUNK
    assert eval_chunk(MetaWorldDistribution, 10) == 16
    assert eval_chunk(MetaWorldDistribution, 500) == 1
    meta = build_meta_learner(nav_recipe(learner={"backend": "batched"}), CPU)
    assert isinstance(meta, BatchedRLMetaLearner)
    training = meta._env(meta.dist.sample(2, np.random.default_rng(0)))
    curves = meta.curves([0, 1], 3)
    assert curves["return"].n_tasks == 3
    assert meta._envs == {2: training}
