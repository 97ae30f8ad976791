"""`metarl.allocator`: the `metarl` command keeps freed memory in the process (glibc)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = "from metarl.allocator import keep_freed_memory as k; print(k(), k())"


def run(env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_setting_once_and_system_opts_out():
    env = {k: v for k, v in os.environ.items() if k != "METARL_MALLOC"}
    assert run(env) == "True True"
    assert run({**env, "METARL_MALLOC": "system"}) == "False False"
