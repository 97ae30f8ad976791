"""An environment family declared inside a recipe's `[task]` table, so a single TOML file
meta-trains on any Gymnasium environment with no Python:

```toml
[task]
name = "env-family"                  # this distribution
family = "HeavyPendulum"             # registered as metarl/HeavyPendulum-v0
base = "Pendulum-v1"                 # any Gymnasium env id
params = { m = { uniform = [0.5, 2.0], scale = true }, l = { uniform = [0.8, 1.2], scale = true } }
```

The other keys are those of an `envs/*.toml` family file (`envs/README.md`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarl.envs import register_family, registered_families
from metarl.envs.distribution import EnvFamilyDistribution
from metarl.envs.spec import family_from_dict
from metarl.errors import ConfigError


def inline_family(family: str | None = None, **declaration: Any) -> EnvFamilyDistribution:
    """Register (once per process) and return the family the recipe declares."""
    if family is None:
        raise ConfigError('[task] of an env-family recipe needs family = "<Name>"')
    spec = family_from_dict({"name": family, **declaration}, Path(f"recipe-{family}.toml"))
    known = next((f for f in registered_families() if f.env_id == spec.env_id), None)
    if known is None:
        register_family(spec)
    elif known.raw_params != spec.raw_params or known.base != spec.base:
        raise ConfigError(
            f"family {family!r} is already registered with another declaration "
            f"({known.source}); give this one another name"
        )
    return EnvFamilyDistribution(spec.env_id)
