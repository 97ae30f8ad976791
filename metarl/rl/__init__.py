"""Meta-RL: the PPO inner loop (stable-baselines3) behind the `MetaLearner` interface.

`metarl.meta_learners` imports `metarl.rl.ppo_learner` only when a recipe's task has kind
"rl", so supervised users never import stable-baselines3.
"""
