"""Record Meta-World's scripted experts under the installed MuJoCo, for the fidelity test of
metarl's MuJoCo 4 patch (`metarl/envs/metaworld_compat.py`).

The reference in tests/data/ was made under Meta-World's own pin, MuJoCo 3.3.0, e.g. with both
installed into a side folder so the project's MuJoCo 4 stays:

    pip install --no-deps --target /tmp/mj33 mujoco==3.3.0
    PYTHONPATH=/tmp/mj33 python scripts/tools/metaworld_reference.py \\
        --out tests/data/metaworld_mujoco33.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path

from metarl.envs.metaworld_compat import EXPERTS, expert_replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--goals", type=int, default=10)
    args = parser.parse_args()
    import mujoco

    record = {
        "mujoco": mujoco.__version__,
        "metaworld": importlib.metadata.version("metaworld"),
        "goals": args.goals,
        "skills": {skill: expert_replay(skill, args.goals) for skill in EXPERTS},
    }
    args.out.write_text(json.dumps(record) + "\n")
    for skill, r in record["skills"].items():
        print(f"{skill:15s} first success {r['first_success']}")
    print(f"wrote {args.out} (MuJoCo {record['mujoco']}, Meta-World {record['metaworld']})")


if __name__ == "__main__":
    main()
