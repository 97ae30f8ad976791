"""RL²'s pieces on the batched engine: a GRU actor-critic, trials of k episodes, PPO on them.

RL² (Duan et al. 2016; Wang et al. 2016) adapts by a recurrent hidden state, not by a
gradient step. The policy reads, at every step, the observation, the previous action, the
previous reward and a flag saying the previous step ended an episode; its hidden state is
carried across the k episodes of one *trial* on one task and reset (to zeros) only when a new
trial starts. What it learned about the task in episode 1 is in the hidden state when episode
2 starts.

- `RecurrentActorCritic`: one GRU whose state feeds a policy head and a value head (SB3's
  action distributions: a diagonal Gaussian with a state-independent `log_std`, or a
  categorical); plain torch, so it runs on whatever device its parameters are on.
- `collect_trials`: one trial per sub-env of a `TaskVectorEnv` (`metarl.envs.vector`: the
  meta-batch's tasks x trials stepped together, one GRU step per env step for all of them).
  A sub-env that has finished its k episodes keeps stepping until the slowest one finishes
  (the vector env steps all at once); those steps are masked out (`Trials.mask`) and not
  counted as env steps. The result is the recurrent rollout buffer: `[trials, time]` tensors.
- `trial_gae`: GAE over the whole trial. Inner episode boundaries do not cut it -- the
  return of episode 2 flows back into episode 1, which is what rewards exploring there --
  and the trial's end is terminal (value 0): the trial is over whatever the env's state.
- `RecurrentPPO`: PPO's clipped update on whole-trial sequences. Trials are short (tens to a
  few hundred steps), so backpropagation through the whole trial from its zero initial state
  is exact and cheap: no truncated BPTT, no stored hidden states going stale as the weights
  move during the epochs. Minibatches are sets of whole trials. Under torchrun each rank holds
  its share of the meta-batch's trials (`TrialShare`): a minibatch is the same set of the
  whole batch's trials on every rank, its normalizers and gradient are summed over ranks, and
  every rank takes the same Adam step, so the update does not depend on how the trials are
  split (up to float summation order).

Randomness: the action noise and the sub-envs' reset seeds come from `RolloutNoise` (per-task
generators seeded by (task seed, rollout index)), and the minibatch order from a generator
the caller hands in, so a trial is a function of the weights, the task and its seed alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from metarl.rl.rl2_settings import RL2Settings
from metarl.rl.rollout import RolloutNoise, RolloutTimers, TimedEnv

LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
ADAM_EPS = 1e-5
"""As SB3's PPO builds its Adam (`metarl.rl.batched_ppo.ADAM_EPS`)."""
NOISE_CHUNK = 128
"""Env steps of action noise drawn at a time per task (a trial's length is not known ahead)."""
MAX_TRIAL_STEPS = 1_000_000
"""A trial that has not ended after this many steps is an env that never ends an episode."""


class RecurrentActorCritic(nn.Module):
    """The RL² policy and value: GRU(obs, previous action, previous reward, done) -> heads.

    The input at step t is `[obs_t, a_{t-1}, r_{t-1}, d_{t-1}]`: the previous action one-hot
    for a Discrete space (as the env received it, clipped, for a Box), the previous reward,
    and 1.0 where step t-1 ended an episode (so obs_t starts a new one); all zero at a
    trial's first step, where the hidden state is zero too."""

    def __init__(
        self,
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
        hidden_size: int,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"observation space {observation_space}: expected a flat Box")
        if not isinstance(action_space, spaces.Box | spaces.Discrete):
            raise ValueError(f"action space {action_space}: expected a Box or a Discrete space")
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.obs_dim = int(observation_space.shape[0])
        self.action_dim = (
            int(action_space.n)
            if isinstance(action_space, spaces.Discrete)
            else int(np.prod(action_space.shape))
        )
        self.hidden_size = hidden_size
        self.input_dim = self.obs_dim + self.action_dim + 2
        self.gru = nn.GRU(self.input_dim, hidden_size, batch_first=True)
        self.pi = nn.Linear(hidden_size, self.action_dim)
        self.vf = nn.Linear(hidden_size, 1)
        # small policy output at the start (as SB3's orthogonal init gives its action net)
        nn.init.orthogonal_(self.pi.weight, gain=0.01)
        nn.init.zeros_(self.pi.bias)
        nn.init.orthogonal_(self.vf.weight, gain=1.0)
        nn.init.zeros_(self.vf.bias)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((self.action_dim,), float(log_std_init)))

    def initial_state(self, batch: int) -> Tensor:
        """The hidden state at a trial's start: zeros, `[batch, hidden]`."""
        device = self.pi.weight.device
        return torch.zeros(batch, self.hidden_size, device=device)

    def inputs(self, obs: Tensor, prev_action: Tensor, prev_reward: Tensor, done: Tensor) -> Tensor:
        """The GRU's input `[..., input_dim]` from its parts (`prev_action` as the env took
        it: indices for Discrete, vectors for Box)."""
        if self.discrete:
            action = nn.functional.one_hot(prev_action.long(), self.action_dim).to(obs.dtype)
        else:
            action = prev_action
        return torch.cat([obs, action, prev_reward.unsqueeze(-1), done.unsqueeze(-1)], -1)

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One env step for a batch: input `[batch, input_dim]`, state `[batch, hidden]` ->
        (head output `[batch, action_dim]`, value `[batch]`, next state)."""
        out, h_next = self.gru(x.unsqueeze(1), h.unsqueeze(0))
        latent = out.squeeze(1)
        return self.pi(latent), self.vf(latent).squeeze(-1), h_next.squeeze(0)

    def sequence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Whole trials from their zero initial state: `[batch, time, input_dim]` ->
        (head outputs `[batch, time, action_dim]`, values `[batch, time]`)."""
        latent, _ = self.gru(x, self.initial_state(x.shape[0]).unsqueeze(0))
        return self.pi(latent), self.vf(latent).squeeze(-1)

    def sample(self, out: Tensor, noise: Tensor) -> Tensor:
        """Actions from the head output and the caller's noise (standard normal for a
        Gaussian, uniform in (0, 1) for the Gumbel-max draw of a categorical)."""
        if self.discrete:
            return (out - torch.log(-torch.log(noise))).argmax(-1)
        return out + self.log_std.exp() * noise

    def mode(self, out: Tensor) -> Tensor:
        """The deterministic action: the most likely arm, or the Gaussian's mean."""
        return out.argmax(-1) if self.discrete else out

    def log_prob_entropy(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probability of `actions` and the entropy, summed over action dimensions."""
        if self.discrete:
            log_p = torch.log_softmax(out, -1)
            chosen = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            return chosen, -(log_p.exp() * log_p).sum(-1)
        log_std = self.log_std
        log_prob = -((actions - out) ** 2) / (2 * torch.exp(2 * log_std)) - log_std - LOG_SQRT_2PI
        entropy = (0.5 + LOG_SQRT_2PI + log_std).expand_as(out)
        return log_prob.sum(-1), entropy.sum(-1)


@dataclass
class Trials:
    """One trial per sub-env: the recurrent rollout buffer. Tensors are `[trials, time]`
    (trials ordered `[task, env]` as the vector env's sub-envs), padded after a trial's end
    (`mask` 0 there)."""

    inputs: Tensor
    """`[trials, time, input_dim]`: what the GRU read at each step."""
    actions: Tensor
    log_probs: Tensor
    values: Tensor
    rewards: Tensor
    mask: Tensor
    """1.0 for the steps of the trial, 0.0 for the padding after it."""
    episode_returns: np.ndarray
    """`[trials, episodes]`: each episode's undiscounted return."""
    episode_successes: np.ndarray | None
    """`[trials, episodes]`: 1 where the env reported `info["success"]` in the episode
    (Meta-World's criterion), None for envs that do not report it."""
    episode_lengths: np.ndarray
    """`[trials, episodes]`: each episode's env steps (what the trial spent before the next
    episode: evaluation's axis of experience)."""
    advantages: Tensor | None = None
    returns: Tensor | None = None

    @property
    def env_steps(self) -> int:
        """Steps inside the trials (the padding is not counted)."""
        return int(self.mask.sum().item())


def _noise_block(model: RecurrentActorCritic, noise: RolloutNoise, envs: int) -> Tensor:
    """`[tasks * envs, NOISE_CHUNK, action_dim]` of the action noise, each task's drawn from
    its own generator (so a task's actions depend on its seed alone)."""
    shape = (NOISE_CHUNK, envs, model.action_dim)
    if model.discrete:
        draws = [rng.uniform(np.finfo(np.float32).tiny, 1.0, size=shape) for rng in noise.rngs]
    else:
        draws = [rng.standard_normal(size=shape) for rng in noise.rngs]
    block = np.stack(draws).astype(np.float32)  # [tasks, time, envs, dim]
    block = block.transpose(0, 2, 1, 3).reshape(-1, NOISE_CHUNK, model.action_dim)
    return torch.from_numpy(np.ascontiguousarray(block))


def collect_trials(
    model: RecurrentActorCritic,
    env: Any,
    noise: RolloutNoise,
    episodes: int,
    *,
    deterministic: bool = False,
    timers: RolloutTimers | None = None,
) -> Trials:
    """Reset `env` (a `TaskVectorEnv`) with per-sub-env seeds and run one trial of
    `episodes` episodes in every sub-env, the hidden state carried across the episode
    boundaries (autoreset) and starting from zeros. `deterministic` takes the most likely
    action (evaluation's "act greedily" variant) instead of sampling."""
    timers = timers or RolloutTimers()
    n = env.num_envs
    device = model.pi.weight.device
    timed = TimedEnv(env, timers)
    obs_np = timed.reset(noise.env_seeds(env.envs_per_task))
    h = model.initial_state(n)
    prev_action = torch.zeros((n,) if model.discrete else (n, model.action_dim), device=device)
    prev_reward = torch.zeros(n, device=device)
    prev_done = torch.zeros(n, device=device)
    completed = np.zeros(n, dtype=np.int64)
    running = np.zeros(n)
    returns = np.zeros((n, episodes))
    lengths = np.zeros((n, episodes))
    length = np.zeros(n)
    successes: np.ndarray | None = None
    steps: dict[str, list[Tensor]] = {k: [] for k in ("x", "a", "lp", "v", "r", "m")}
    draws = torch.zeros(0)
    t = 0
    with torch.no_grad():
        while (completed < episodes).any():
            if t >= MAX_TRIAL_STEPS:
                raise RuntimeError(f"a trial ran {t} steps without ending {episodes} episodes")
            if t % NOISE_CHUNK == 0:
                draws = _noise_block(model, noise, env.envs_per_task).to(device)
            timed.start()
            obs = torch.from_numpy(np.asarray(obs_np, dtype=np.float32)).to(device)
            x = model.inputs(obs, prev_action, prev_reward, prev_done)
            out, value, h = model.step(x, h)
            if deterministic:
                action = model.mode(out)
            else:
                action = model.sample(out, draws[:, t % NOISE_CHUNK])
            log_prob, _ = model.log_prob_entropy(out, action)
            step_actions = timed.clip(action.cpu().numpy())
            obs_np, reward, terminated, truncated, infos = timed.step(step_actions)
            live = completed < episodes
            done = np.logical_or(terminated, truncated)
            reward = np.asarray(reward, dtype=np.float64)
            running += reward
            length += 1
            if "success" in infos:
                if successes is None:
                    successes = np.zeros((n, episodes))
                hit = live & (np.asarray(infos["success"], dtype=np.float64) > 0)
                rows = np.flatnonzero(hit)
                successes[rows, completed[rows]] = 1.0
            for i in np.flatnonzero(done & live):
                returns[i, completed[i]] = running[i]
                lengths[i, completed[i]] = length[i]
            running[done] = 0.0
            length[done] = 0.0
            completed += done & live
            steps["x"].append(x)
            steps["a"].append(action)
            steps["lp"].append(log_prob)
            steps["v"].append(value)
            reward_t = torch.as_tensor(reward, dtype=torch.float32, device=device)
            steps["r"].append(reward_t)
            steps["m"].append(torch.as_tensor(live, dtype=torch.float32, device=device))
            taken = torch.as_tensor(step_actions, device=device)
            prev_action = taken.to(prev_action.dtype)
            prev_reward = reward_t
            prev_done = torch.as_tensor(done, dtype=torch.float32, device=device)
            timed.stop()
            t += 1
    stacked = {k: torch.stack(v, 1) for k, v in steps.items()}
    return Trials(
        inputs=stacked["x"],
        actions=stacked["a"],
        log_probs=stacked["lp"],
        values=stacked["v"],
        rewards=stacked["r"],
        mask=stacked["m"],
        episode_returns=returns,
        episode_successes=successes,
        episode_lengths=lengths,
    )


def trial_gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """GAE(lambda) over each trial (`[trials, time]`), the trial's end terminal and episode
    boundaries inside it ignored (see the module docstring); zero on the padding. Returns
    (advantages, lambda-returns)."""
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        if t == steps - 1:
            next_value = torch.zeros_like(running)
            next_live = torch.zeros_like(running)
        else:
            next_live = mask[:, t + 1]
            next_value = values[:, t + 1] * next_live
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * next_live * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, advantages + values * mask


def one_rank(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The sum over ranks when there is one rank: the tensors themselves."""
    return tensors


@dataclass(frozen=True)
class TrialShare:
    """This rank's trials within the meta-batch's: the whole batch's trials `first` to
    `first + len(trials) - 1` of `total`, and the sum over ranks of a dict of tensors
    (`World.all_reduce_sum`). One rank holds them all."""

    first: int
    total: int
    reduce: Callable[[dict[str, Tensor]], dict[str, Tensor]] = field(default=one_rank)

    def local(self, chosen: np.ndarray, held: int) -> np.ndarray:
        """The positions in this rank's trials (of which it holds `held`) of the whole
        batch's trials `chosen`, in their order."""
        mine = chosen[(chosen >= self.first) & (chosen < self.first + held)]
        return mine - self.first


class RecurrentPPO:
    """PPO on whole trials: `n_epochs` passes, each over the trials split into `minibatches`
    sets in a random order; per minibatch the clipped surrogate, the value loss (MSE to the
    lambda-returns) and the entropy term averaged over the steps inside the trials,
    advantages normalized over those steps, the gradient's global norm clipped, one Adam step.

    The Adam state is the learner's training state: kept from one meta-iteration to the next
    (PPO is RL²'s outer learner, so this is the one optimizer of the run)."""

    def __init__(self, model: RecurrentActorCritic, settings: RL2Settings, lr: float) -> None:
        self.model, self.settings = model, settings
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=ADAM_EPS)

    def loss(
        self,
        trials: Trials,
        index: Tensor,
        reduce: Callable[[dict[str, Tensor]], dict[str, Tensor]] = one_rank,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """PPO's loss on this rank's trials `index` of a minibatch, normalized by the whole
        minibatch's step count (`reduce` sums over ranks), so the ranks' losses sum to the
        minibatch's; the parts likewise."""
        c = self.settings
        assert trials.advantages is not None and trials.returns is not None
        mask = trials.mask[index]
        advantages = trials.advantages[index]
        totals = reduce({"count": mask.sum(), "advantage": (advantages * mask).sum()})
        count = totals["count"].clamp(min=1.0)
        if c.normalize_advantage and count > 1:
            mean = totals["advantage"] / count
            spread = reduce({"square": (((advantages - mean) * mask) ** 2).sum()})
            var = spread["square"] / (count - 1)
            advantages = (advantages - mean) / (var.sqrt() + 1e-8)
        if index.numel() == 0:  # none of the minibatch's trials is on this rank
            zero = mask.new_zeros(())
            return zero, {"policy_loss": zero, "value_loss": zero, "entropy": zero}
        out, values = self.model.sequence(trials.inputs[index])
        log_prob, entropy = self.model.log_prob_entropy(out, trials.actions[index])
        ratio = torch.exp(log_prob - trials.log_probs[index])
        clipped = torch.clamp(ratio, 1 - c.clip_range, 1 + c.clip_range)
        surrogate = torch.min(advantages * ratio, advantages * clipped)
        policy_loss = -(surrogate * mask).sum() / count
        value_loss = (((trials.returns[index] - values) ** 2) * mask).sum() / count
        entropy_loss = -(entropy * mask).sum() / count
        loss = policy_loss + c.ent_coef * entropy_loss + c.vf_coef * value_loss
        return loss, {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": -entropy_loss,
        }

    def update(
        self, trials: Trials, rng: np.random.Generator, share: TrialShare | None = None
    ) -> dict[str, float]:
        """Advantages, then the epochs of minibatch steps over the whole batch's trials
        (order drawn from `rng`, the same on every rank), each step's gradient and metrics
        summed over ranks (`share`; default: this rank holds every trial)."""
        c = self.settings
        held = trials.inputs.shape[0]
        share = share or TrialShare(0, held)
        trials.advantages, trials.returns = trial_gae(
            trials.rewards * c.reward_scale, trials.values, trials.mask, c.gamma, c.gae_lambda
        )
        n = share.total
        size = max(1, math.ceil(n / c.minibatches))
        params = dict(self.model.named_parameters())
        sums: dict[str, float] = {}
        count = 0
        for _ in range(c.n_epochs):
            order = rng.permutation(n)
            for start in range(0, n, size):
                local = share.local(order[start : start + size], held)
                index = torch.from_numpy(local).to(trials.inputs.device)
                loss, parts = self.loss(trials, index, share.reduce)
                self.optimizer.zero_grad(set_to_none=True)
                if loss.requires_grad:
                    loss.backward()
                grads = {
                    k: torch.zeros_like(p) if p.grad is None else p.grad for k, p in params.items()
                }
                logged = {f"metric/{k}": v.detach() for k, v in {"ppo_loss": loss, **parts}.items()}
                summed = share.reduce({**grads, **logged})
                for k, p in params.items():
                    p.grad = summed[k]
                nn.utils.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                self.optimizer.step()
                for k in ("ppo_loss", *parts):
                    sums[k] = sums.get(k, 0.0) + float(summed[f"metric/{k}"])
                count += 1
        return {k: v / max(count, 1) for k, v in sums.items()}


__all__ = [
    "RecurrentActorCritic",
    "RecurrentPPO",
    "TrialShare",
    "Trials",
    "collect_trials",
    "one_rank",
    "trial_gae",
]
