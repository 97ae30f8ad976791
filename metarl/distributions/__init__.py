"""The task distributions of supervised few-shot problems, one module each: `sine` (sine
regression), `omniglot` and `miniimagenet` (N-way classification episodes over the images that
`metarl.data` reads). RL task families live beside them in `metarl.envs`. All are registered
by name in `metarl.registry` and built from a recipe's `[task]` table."""
