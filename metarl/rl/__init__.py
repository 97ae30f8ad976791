"""The RL pieces below the learners: the `[learner]` settings and the engine registry
(`settings`), SB3's policy with per-task weights (`policy`), batched rollouts and GAE
(`rollout`), PPO's and MAML-RL's updates (`batched_ppo`, `vpg`), and the baselines that make a
meta-RL result honest (`baselines`). The RL meta-learner itself is `metarl.learners.rl_core`
with its engines."""
