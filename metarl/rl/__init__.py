"""Meta-RL beyond the learner itself (which is `metarl.learners.sb3_ppo`): the baselines that
make a meta-RL result honest (`baselines`)."""
