"""The GPU path in one command: train, resume and compare against the CPU, in a few minutes.

On a machine with CUDA this meta-trains, each for a short budget and through the library's own
`MetaTrainer` (the code `metarl train` runs):

- sine (fp32) and, when its data is found, Omniglot 5-way 1-shot on `cuda` and on the CPU:
  meta-iterations/s on each, the largest difference between the two runs' weights, and whether
  a run interrupted half-way and resumed on `cuda` (checkpoint loaded with map_location=cuda)
  ends with the same weights as the uninterrupted one;
- the same with `--amp` (bfloat16 autocast in the inner loop; its weights differ from the fp32
  CPU run by bfloat16 rounding, so that difference is reported, not judged);
- the RL recipe navigation2d (the batched RL learner) for 2 iterations (actions are sampled
  from the device's random stream, so CPU and CUDA runs see different trajectories:
  difference reported only);
- 2 nccl ranks under torchrun when there are 2 or more GPUs (its weights against 1 rank's).

It prints a markdown table and exits 1 if any check failed. Without CUDA it says so and exits 0.
`--device cpu` runs every check with the CPU in the GPU's place (2 gloo ranks for nccl): a dry
run of the script's logic on any machine. Needs no network. Omniglot's data is looked for in
--data-dir, $METARL_DATA, ./shared/data and ../shared/data.

    python scripts/tools/gpu_check.py                  # on a GPU machine, about 2-4 minutes
    python scripts/tools/gpu_check.py --device cpu     # dry run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from metarl.config import Recipe, with_overrides
from metarl.registry import resolve_recipe
from metarl.run import RunDir
from metarl.train import MetaTrainer, TrainingInterrupted

REPO = Path(__file__).resolve().parents[2]
FP32_TOLERANCE = 1e-3
"""Largest accepted |w_device - w_cpu| after the fp32 budget: float reordering on the GPU
(cuDNN, reductions) grows over iterations but stays orders of magnitude below this."""
RESUME_TOLERANCE = 1e-5
"""A resumed run equal to the uninterrupted one up to this is "close" (GPU kernels that are not
bitwise deterministic); beyond it the resume check fails."""


@dataclass
class Row:
    check: str
    device_rate: float | None = None
    cpu_rate: float | None = None
    max_diff: float | None = None
    resume: str = "--"
    result: str = "ok"
    note: str = ""

    def cells(self) -> list[str]:
        speed = (
            f"{self.device_rate / self.cpu_rate:.2f}x"
            if self.device_rate and self.cpu_rate
            else "--"
        )
        return [
            self.check,
            _fmt(self.device_rate, ".2f"),
            _fmt(self.cpu_rate, ".2f"),
            speed,
            _fmt(self.max_diff, ".2e"),
            self.resume,
            self.result,
            self.note,
        ]


def _fmt(value: float | None, spec: str) -> str:
    return "--" if value is None else format(value, spec)


class IterationClock:
    """Times meta-iterations after the first (warm-up: CUDA context, kernels, data)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    def on_start(self, trainer: MetaTrainer) -> None:
        pass

    def on_iteration(self, trainer: MetaTrainer, metrics: dict[str, float]) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times.append(time.perf_counter())

    def on_end(self, trainer: MetaTrainer) -> None:
        pass

    def rate(self) -> float | None:
        if len(self.times) < 2:
            return None
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


class StopAt:
    """Requests a stop (the Ctrl-C path) after an iteration."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_start(self, trainer: MetaTrainer) -> None:
        pass

    def on_iteration(self, trainer: MetaTrainer, metrics: dict[str, float]) -> None:
        if metrics["iteration"] == self.iteration:
            trainer.request_stop()

    def on_end(self, trainer: MetaTrainer) -> None:
        pass


Weights = dict[str, torch.Tensor]


def train(recipe: Recipe, device: torch.device, out: Path) -> tuple[Weights, float | None]:
    """Train `recipe` into `out`; the final weights (on the CPU) and the meta-iterations/s."""
    clock = IterationClock(device)
    trainer = MetaTrainer.start(recipe, out, device, callbacks=[clock])
    trainer.fit()
    return _cpu_weights(trainer), clock.rate()


def train_interrupted_and_resumed(recipe: Recipe, device: torch.device, out: Path) -> Weights:
    """Stop half-way (writing the checkpoint), resume from it on `device`, train to the end."""
    half = max(recipe.train.meta_iterations // 2, 1)
    with contextlib.suppress(TrainingInterrupted):
        MetaTrainer.start(recipe, out, device, callbacks=[StopAt(half)]).fit()
    resumed = MetaTrainer.resume(out, device)
    if resumed.iteration != half:
        raise RuntimeError(f"resumed at iteration {resumed.iteration}, expected {half}")
    resumed.fit()
    return _cpu_weights(resumed)


def _cpu_weights(trainer: MetaTrainer) -> Weights:
    return {k: v.detach().float().cpu() for k, v in trainer.model.state_dict().items()}


def max_difference(a: Weights, b: Weights) -> float:
    if a.keys() != b.keys():
        raise RuntimeError("the two runs' models have different parameters")
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def short(recipe_name: str, iterations: int, **train: object) -> Recipe:
    """A catalog recipe with a short budget (a checkpoint at the end only)."""
    return with_overrides(
        resolve_recipe(recipe_name),
        "train",
        meta_iterations=iterations,
        checkpoint_every=iterations,
        log_every=1,
        **train,
    )


def compare(
    name: str,
    recipe: Recipe,
    device: torch.device,
    work: Path,
    cpu_run: tuple[Weights, float | None] | None,
    judge_diff: bool,
) -> Row:
    """Train on `device` (straight, and interrupted + resumed) and compare with a CPU run."""
    row = Row(name)
    tag = name.replace(" ", "_")
    weights, row.device_rate = train(recipe, device, work / f"{tag}-device")
    resumed = train_interrupted_and_resumed(recipe, device, work / f"{tag}-resumed")
    resume_diff = max_difference(weights, resumed)
    row.resume = (
        "yes"
        if resume_diff == 0
        else f"close ({resume_diff:.1e})"
        if resume_diff <= RESUME_TOLERANCE
        else f"no ({resume_diff:.1e})"
    )
    if cpu_run is not None:
        cpu_weights, row.cpu_rate = cpu_run
        row.max_diff = max_difference(weights, cpu_weights)
    failures = []
    if resume_diff > RESUME_TOLERANCE:
        failures.append("resume differs")
    if judge_diff and row.max_diff is not None and row.max_diff > FP32_TOLERANCE:
        failures.append(f"differs from CPU beyond {FP32_TOLERANCE:g}")
    if failures:
        row.result = "FAIL: " + ", ".join(failures)
    return row


def two_ranks(device: torch.device, iterations: int, work: Path, single: Weights) -> Row:
    """`metarl train sine` under torchrun with 2 ranks (nccl on GPUs, gloo on the CPU)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    row = Row(f"sine, 2 {backend} ranks")
    out = work / "sine-2ranks"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        "-m",
        "metarl",
        "train",
        "sine",
        "--out",
        str(out),
        "--meta-iterations",
        str(iterations),
        "--device",
        device.type,
        "-q",
    ]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        row.result = f"FAIL: exit {done.returncode}: {tail[:120]}"
        return row
    rows = RunDir(out).read_metrics()
    elapsed = rows[-1]["elapsed_s"] if rows else time.perf_counter() - started
    row.device_rate = iterations / elapsed
    ranks = {k: v.float() for k, v in RunDir(out).load_checkpoint().model.items()}
    row.max_diff = max_difference(ranks, single)
    row.note = "diff against 1 rank (sum order differs)"
    if row.max_diff > FP32_TOLERANCE:
        row.result = f"FAIL: differs from 1 rank beyond {FP32_TOLERANCE:g}"
    return row


def find_data(explicit: str | None) -> Path | None:
    """A data root holding Omniglot's two archives, or None."""
    candidates = [explicit, os.environ.get("METARL_DATA"), REPO / "shared/data"]
    candidates.append(REPO.parent / "shared/data")
    for c in candidates:
        if c and (Path(c) / "omniglot" / "images_background.zip").is_file():
            return Path(c)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    parser.add_argument("--data-dir", default=None, help="data root holding omniglot/")
    parser.add_argument("--sine-iterations", type=int, default=40)
    parser.add_argument("--omniglot-iterations", type=int, default=20)
    parser.add_argument("--rl-iterations", type=int, default=2)
    parser.add_argument(
        "--only", default="sine,omniglot,amp,rl,ranks", help="comma-separated checks to run"
    )
    args = parser.parse_args()
    if args.device is None and not torch.cuda.is_available():
        print("no CUDA device here: nothing to check (`--device cpu` dry-runs the checks)")
        return 0
    device = torch.device(args.device or "cuda")
    cpu = torch.device("cpu")
    only = set(args.only.split(","))
    data = find_data(args.data_dir)
    if data is not None:
        os.environ["METARL_DATA"] = str(data)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # autotuning picks kernels per run
        torch.backends.cudnn.deterministic = True
        # fp32 means fp32: cuDNN convolutions default to TF32 on Ampere and later (10-bit
        # mantissa), which put Omniglot's weights 1e-2 from the CPU run's after 20 iterations
        # on an H100 (first run of this script, 2026-11-27). metarl leaves torch's defaults to
        # the user; this check compares full-precision arithmetic.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    rows: list[Row] = []
    notes: list[str] = []
    gpus = torch.cuda.device_count() if device.type == "cuda" else 2

    def check(name: str, fn: Callable[[], Row]) -> None:
        print(f"... {name}", flush=True)
        started = time.perf_counter()
        try:
            row = fn()
        except Exception as e:  # a crash is a result here: report it and go on
            traceback.print_exc()
            row = Row(name, result=f"FAIL: {type(e).__name__}: {str(e)[:120]}")
        print(f"    {row.result} ({time.perf_counter() - started:.0f} s)", flush=True)
        rows.append(row)

    with tempfile.TemporaryDirectory(prefix="metarl-gpu-check-") as tmp:
        work = Path(tmp)
        sine = short("sine", args.sine_iterations)
        sine_cpu = train(sine, cpu, work / "sine-cpu") if only & {"sine", "ranks"} else None
        if "sine" in only:
            check("sine", lambda: compare("sine", sine, device, work, sine_cpu, True))
        if "ranks" in only and sine_cpu is not None:
            if gpus >= 2:
                check(
                    "sine, 2 ranks",
                    lambda: two_ranks(device, args.sine_iterations, work, sine_cpu[0]),
                )
            else:
                notes.append(f"2 nccl ranks: skipped, {gpus} GPU(s) here (needs 2)")
        omniglot = None
        if only & {"omniglot", "amp"}:
            if data is None:
                notes.append("Omniglot: skipped, no data (set METARL_DATA or --data-dir)")
            else:
                omniglot = short("omniglot-5way-1shot", args.omniglot_iterations)
        if omniglot is not None:
            omni_cpu = train(omniglot, cpu, work / "omniglot-cpu")
            if "omniglot" in only:
                # One iteration is judged against the CPU; over many, the difference grows by
                # itself (Adam with beta1 = 0 divides rounding-sized gradients by their own
                # size): on an H100, 4.6e-5 after 1 iteration, 1.8e-3 after 5, 7.8e-3 after 20.
                one = short("omniglot-5way-1shot", 1)
                one_cpu = train(one, cpu, work / "omniglot-cpu-1")
                check(
                    "omniglot-5way-1shot, 1 iteration",
                    lambda: compare("omniglot 1 it", one, device, work, one_cpu, True),
                )
                check(
                    "omniglot-5way-1shot",
                    lambda: compare("omniglot", omniglot, device, work, omni_cpu, False),
                )
                rows[-1].note = "drift over iterations reported, not judged (1 iteration is)"
            if "amp" in only:
                amp = with_overrides(omniglot, "train", amp=True)
                check(
                    "omniglot --amp",
                    lambda: compare("omniglot amp", amp, device, work, omni_cpu, False),
                )
                rows[-1].note = "diff vs fp32 CPU: bfloat16 rounding, not judged"
        elif "amp" in only:
            amp = with_overrides(sine, "train", amp=True)
            check("sine --amp", lambda: compare("sine amp", amp, device, work, sine_cpu, False))
            rows[-1].note = "diff vs fp32 CPU: bfloat16 rounding, not judged"
        if "rl" in only:
            nav = short("navigation2d", args.rl_iterations)
            nav_cpu = train(nav, cpu, work / "nav-cpu")
            check(
                "navigation2d", lambda: compare("navigation2d", nav, device, work, nav_cpu, False)
            )
            rows[-1].note = "device and CPU sample different actions: diff not judged"
    print()
    header = ["check", f"it/s {device.type}", "it/s cpu", "speed-up", "max abs diff vs cpu"]
    header += [f"resume on {device.type} exact", "result", "note"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    for note in notes:
        print(f"- {note}")
    failed = [r.check for r in rows if r.result != "ok"]
    print(
        f"\n{len(rows) - len(failed)}/{len(rows)} checks passed"
        + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
