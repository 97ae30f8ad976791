"""Mini-ImageNet: import of the three formats users hold, the refusal of code-running pickles,
the compact form and its checks, episodes, the conv net under the vmapped inner loop, and
transductive versus non-transductive evaluation."""

from __future__ import annotations

import copy
import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from metarl.cli import app
from metarl.config import OptimizerName, recipe_from_dict
from metarl.data.miniimagenet import (
    PICKLE,
    SPLITS,
    SplitImages,
    benchmark_classes,
    benchmark_files,
    fetch,
    import_,
    load,
    verify,
)
from metarl.data.safe_pickle import load_arrays
from metarl.distributions.miniimagenet import MiniImageNetDistribution
from metarl.distributions.sine import SineDistribution
from metarl.errors import ConfigError, UserError
from metarl.learners import supervised as meta_learners
from metarl.learners.inner_loop import InnerLoop, InnerOptimizer, stack
from metarl.learners.supervised import SupervisedMetaLearner
from metarl.models import conv_classifier
from metarl.protocol import Split

CLASSES = {s: benchmark_classes()[s][:3] for s in SPLITS}  # real WordNet IDs, right splits
PER_CLASS = 4
runner = CliRunner()


def color(split: str, c: int, i: int) -> tuple[int, int, int]:
    """A solid colour that says which split, class and image a picture is."""
    return (40 + 60 * SPLITS.index(split), 30 + 70 * c, 20 + 50 * i)


def picture(split: str, c: int, i: int, size: tuple[int, int] = (30, 20)) -> Image.Image:
    return Image.new("RGB", size, color(split, c, i))


def write_ravi(src: Path) -> Path:
    """Format (a): images/ of JPEGs (30x20, so import resizes) and the three CSVs."""
    (src / "images").mkdir(parents=True)
    for split, classes in CLASSES.items():
        with (src / f"{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "label"])
            for c, wnid in enumerate(classes):
                for i in range(PER_CLASS):
                    name = f"{wnid}{i + 1:08d}.jpg"
                    picture(split, c, i).save(src / "images" / name, quality=95)
                    w.writerow([name, wnid])
    return src


def write_folders(src: Path, classes: dict[str, list[str]] = CLASSES) -> Path:
    """Format (b): {split}/<wnid>/*.png, 16x16."""
    for split, names in classes.items():
        for c, wnid in enumerate(names):
            d = src / split / wnid
            d.mkdir(parents=True)
            for i in range(PER_CLASS):
                picture(split, c, i, (16, 16)).save(d / f"{wnid}_{i}.png")
    return src


def write_pickles(src: Path, size: int = 84, protocol: int = 2) -> Path:
    """Format (c): learn2learn's caches, images of each class interleaved with the others'."""
    src.mkdir(parents=True, exist_ok=True)
    for split, names in CLASSES.items():
        n = len(names) * PER_CLASS
        images = np.zeros((n, size, size, 3), dtype=np.uint8)
        class_dict: dict[str, list[int]] = {}
        for c, wnid in enumerate(names):
            class_dict[wnid] = [i * len(names) + c for i in range(PER_CLASS)]
            for i, k in enumerate(class_dict[wnid]):
                images[k] = color(split, c, i)
        with (src / PICKLE.format(split=split)).open("wb") as f:
            pickle.dump({"image_data": images, "class_dict": class_dict}, f, protocol=protocol)
    return src


WRITERS = {
    "ravi": write_ravi,
    "folders": write_folders,
    "pickle": write_pickles,
    "pickle-32px": lambda src: write_pickles(src, size=32),
    "pickle-protocol-5": lambda src: write_pickles(src, protocol=5),
}


# --- import -> load -> episodes, for each format --------------------------------------------


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_import_load_and_episodes(fmt, tmp_path):
    root = tmp_path / "root"
    found = import_(WRITERS[fmt](tmp_path / "src"), root, progress=False)
    assert [Path(p).name for p in found] == ["train.npy", "val.npy", "test.npy"]
    for counts in found.values():
        assert counts["classes"] == 3 and counts["images"] == 12 and counts["per class"] == "4"
        assert counts["split"].startswith("custom")
    assert verify(root) == found
    assert not list((root / "miniimagenet").glob(".*part*"))  # nothing left half-written

    data = load(root)
    assert isinstance(data["train"].images, np.memmap)
    for split, d in data.items():
        assert d.images.shape == (12, 84, 84, 3) and d.images.dtype == np.uint8
        assert d.classes == sorted(CLASSES[split])
        for k, wnid in enumerate(d.classes):
            c = CLASSES[split].index(wnid)
            for i in range(PER_CLASS):  # grouped by class, in the source's order
                got = d.images[d.offsets[k] + i].reshape(-1, 3).mean(0)
                np.testing.assert_allclose(got, color(split, c, i), atol=3)

    dist = MiniImageNetDistribution(ways=3, data_dir=str(root))
    rng = np.random.default_rng(0)
    batch = dist.episodes(dist.sample(2, rng, Split.VAL), rng, support=1, query=3)
    assert batch.support_x.shape == (2, 3, 3, 84, 84) and batch.query_x.shape == (2, 9, 3, 84, 84)
    assert batch.support_x.dtype == torch.float32 and batch.support_y.dtype == torch.int64
    assert float(batch.query_x.min()) >= 0.0 and float(batch.query_x.max()) <= 1.0
    assert (torch.bincount(batch.query_y[1], minlength=3) == 3).all()
    # on the CPU the episodes index the memory map itself, not a private copy of the split
    held = dist.images("val")
    assert held.data_ptr() == dist.splits["val"].images.ctypes.data


def test_ravi_images_without_csvs_use_the_shipped_split(tmp_path):
    src = write_ravi(tmp_path / "src")
    for split in SPLITS:
        (src / f"{split}.csv").unlink()
    with pytest.raises(UserError, match=r"n\d{16}\.jpg is missing \(\d+ images of the train"):
        import_(src, tmp_path / "root", progress=False)


# --- refusals -------------------------------------------------------------------------------


class Exploit:
    """Unpickling this calls os.system: what a booby-trapped cache file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path):
    src = write_pickles(tmp_path / "src")
    marker = tmp_path / "pwned"
    bad = src / PICKLE.format(split="train")
    with bad.open("wb") as f:
        pickle.dump({"image_data": Exploit(marker), "class_dict": {}}, f)
    with pytest.raises(UserError, match=r"mini-imagenet-cache-train\.pkl: refused .*\.system"):
        import_(src, tmp_path / "root", progress=False)
    with pytest.raises(UserError, match=r"(posix|nt|os)\.system"):
        load_arrays(bad)
    assert not marker.exists()
    assert not (tmp_path / "root" / "miniimagenet" / "84x84").exists()


def test_a_class_in_the_wrong_split_is_refused(tmp_path):
    leaked = {**CLASSES, "train": [*CLASSES["train"][:2], CLASSES["test"][0]]}
    leaked["test"] = CLASSES["test"][1:]
    with pytest.raises(UserError, match=r"Ravi & Larochelle split puts it in test"):
        import_(write_folders(tmp_path / "src", leaked), tmp_path / "root", progress=False)


def test_splits_sharing_a_class_are_refused(tmp_path):
    custom = {"train": ["cat", "dog"], "val": ["cow", "dog"], "test": ["emu", "elk"]}
    with pytest.raises(UserError, match="class dog is in both the train and the val split"):
        import_(write_folders(tmp_path / "src", custom), tmp_path / "root", progress=False)


def test_a_failed_import_keeps_the_previous_data(tmp_path):
    root = tmp_path / "root"
    before = import_(write_folders(tmp_path / "good"), root, progress=False)
    src = write_folders(tmp_path / "bad")
    broken = next((src / "test").rglob("*.png"))
    broken.write_bytes(b"not an image")
    with pytest.raises(UserError, match=rf"{broken.name}: not a readable image"):
        import_(src, root, progress=False)
    assert verify(root) == before
    assert not list((root / "miniimagenet").glob(".*part*"))


def test_damaged_compact_form_is_reported(tmp_path):
    root, src = tmp_path / "root", write_folders(tmp_path / "src")
    folder = root / "miniimagenet" / "84x84"
    import_(src, root, progress=False)
    (folder / "test.json").unlink()
    with pytest.raises(UserError, match=r"test\.json is missing.*metarl data import miniimagenet"):
        load(root)
    import_(src, root, progress=False)
    np.save(folder / "val.npy", np.zeros((11, 84, 84, 3), dtype=np.uint8))
    with pytest.raises(UserError, match=r"val\.npy: 11 images, but the classes account for 12"):
        verify(root)


def test_fetch_says_there_is_no_download_and_how_to_import(tmp_path):
    with pytest.raises(UserError, match="no canonical public download.*data import miniimagenet"):
        fetch(tmp_path)


@pytest.mark.parametrize(
    "args,message",
    [
        (["data", "verify", "miniimagenet", "--data-dir", "EMPTY"], "no Mini-ImageNet in"),
        (["data", "fetch", "miniimagenet", "--data-dir", "EMPTY"], "no canonical public"),
        (["data", "import", "miniimagenet", "EMPTY", "--data-dir", "EMPTY"], "is not a folder"),
    ],
)
def test_data_cli_errors_exit_2_with_one_line(tmp_path, args, message):
    result = runner.invoke(app, [str(tmp_path / "empty") if a == "EMPTY" else a for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_data_cli_import_states_the_counts(tmp_path):
    args = ["data", "import", "miniimagenet", str(write_folders(tmp_path / "src"))]
    result = runner.invoke(app, [*args, "--data-dir", str(tmp_path / "root")])
    assert result.exit_code == 0, result.output
    assert "3 classes, 12 images, 4 per class, custom" in result.stdout
    assert "train.npy" in result.stdout and "test.npy" in result.stdout


# --- episodes on synthetic in-memory data ---------------------------------------------------


def synthetic(classes: int = 6, per_class: int = 8, seed: int = 0) -> dict[str, SplitImages]:
    rng = np.random.default_rng(seed)
    out = {}
    for split in SPLITS:
        images = rng.integers(0, 256, (classes * per_class, 84, 84, 3), dtype=np.uint8)
        out[split] = SplitImages(
            images, [f"{split}{c}" for c in range(classes)], [per_class] * classes
        )
    return out


@pytest.fixture(scope="module")
def dist() -> MiniImageNetDistribution:
    return MiniImageNetDistribution(ways=5, data=synthetic())


def test_episodes_index_the_right_images(dist):
    rng = np.random.default_rng(3)
    tasks = dist.sample(3, rng, Split.TRAIN)
    batch = dist.episodes(tasks, rng, support=2, query=1)
    images = torch.from_numpy(dist.splits["train"].images).permute(0, 3, 1, 2).float() / 255
    for t, task in enumerate(tasks):
        for x, label in zip(batch.support_x[t], batch.support_y[t], strict=True):
            c = task.classes[label]
            own = images[8 * c : 8 * (c + 1)]
            assert any(torch.equal(x, candidate) for candidate in own)
    # labels are shuffled per task: the same label means different classes across tasks
    assert len({task.classes for task in dist.sample(20, rng, Split.TRAIN)}) > 1


def test_support_does_not_depend_on_the_query_size(dist):
    tasks = dist.sample(2, np.random.default_rng(0), Split.TEST)
    a = dist.episodes(tasks, np.random.default_rng(1), support=3, query=1)
    b = dist.episodes(tasks, np.random.default_rng(1), support=3, query=4)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.support_y, b.support_y)
    again = dist.sample(2, np.random.default_rng(0), Split.TEST)
    assert [t.to_dict() for t in again] == [t.to_dict() for t in tasks]


def test_bad_shots_and_ways(dist):
    tasks = dist.sample(1, np.random.default_rng(0), Split.VAL)
    with pytest.raises(ConfigError, match=r"support \+ query <= 8"):
        dist.episodes(tasks, np.random.default_rng(0), support=5, query=4)
    with pytest.raises(ConfigError, match="task.ways = 7"):
        MiniImageNetDistribution(ways=7, data=synthetic())


# --- the network under the vmapped inner loop -----------------------------------------------


def test_paper_network_shape():
    net = MiniImageNetDistribution(ways=5, data=synthetic()).build_model()
    pools = [m for m in net if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 4 and not list(net.buffers())
    assert net[-1].in_features == 32 * 6 * 6  # 84 -> 42 -> 21 -> 11 -> 6, as TF 'same' pooling
    # supervised-reptile's order: pool, then BatchNorm; same shapes, other statistics
    swapped = MiniImageNetDistribution(ways=5, data=synthetic()).build_model(pool_before_norm=True)
    assert [type(m) for m in swapped[:4]] == [
        torch.nn.Conv2d,
        torch.nn.MaxPool2d,
        torch.nn.BatchNorm2d,
        torch.nn.ReLU,
    ]
    assert [type(m) for m in net[:4]] == [
        torch.nn.Conv2d,
        torch.nn.BatchNorm2d,
        torch.nn.MaxPool2d,
        torch.nn.ReLU,
    ]
    assert swapped[-1].in_features == net[-1].in_features
    # the Omniglot net is unchanged: stride-2 convolutions, no pooling
    omniglot = conv_classifier(1, 28, 5)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in omniglot)
    assert omniglot[-1].in_features == 64 * 2 * 2


def test_vmapped_adaptation_equals_per_task_loop(dist):
    """Two tasks of two 84x84 images: the vmapped learner equals a deep copy of the paper's
    network trained task by task with torch.optim.Adam (beta1 = 0)."""
    torch.manual_seed(0)
    model = MiniImageNetDistribution(ways=2, data=synthetic()).build_model()
    rng = np.random.default_rng(4)
    d2 = MiniImageNetDistribution(ways=2, data=dist.splits)
    batch = d2.episodes(d2.sample(2, rng, Split.TRAIN), rng, support=1, query=1)
    lr, steps = 1e-3, 2
    opt = InnerOptimizer(OptimizerName.ADAM, lr, beta1=0.0)
    learner = InnerLoop(model, "cross_entropy", opt)
    phi = {k: v.detach() for k, v in model.named_parameters()}
    adapted = learner.adapt(phi, batch, steps)
    for i in range(2):
        m = copy.deepcopy(model)
        adam = torch.optim.Adam(m.parameters(), lr=lr, betas=(0.0, 0.999))
        for _ in range(steps):
            adam.zero_grad()
            torch.nn.functional.cross_entropy(m(batch.support_x[i]), batch.support_y[i]).backward()
            adam.step()
        for k, v in m.named_parameters():
            torch.testing.assert_close(adapted[k][i], v.detach(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(adapted["0.weight"][0], phi["0.weight"])


# --- transductive and non-transductive evaluation -------------------------------------------


def tiny_bn_learner() -> tuple[InnerLoop, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = conv_classifier(3, 8, 3, filters=4, layers=2, pool=True)
    learner = InnerLoop(model, "cross_entropy", InnerOptimizer(OptimizerName.SGD, 0.1))
    return learner, {k: v.detach() for k, v in model.named_parameters()}


def test_non_transductive_is_the_support_plus_one_example():
    learner, phi = tiny_bn_learner()
    gen = torch.Generator().manual_seed(0)
    sx, qx = torch.rand(2, 3, 3, 8, 8, generator=gen), torch.rand(2, 5, 3, 8, 8, generator=gen)
    params = {k: torch.stack([v, v * 1.1]) for k, v in phi.items()}
    out = learner.predict_each_with_support(params, sx, qx, group=2)
    assert out.shape == (2, 5, 3)
    for t in range(2):
        one = {k: v[t] for k, v in params.items()}
        for q in range(5):
            x = torch.cat([sx[t], qx[t, q : q + 1]])
            expected = torch.func.functional_call(learner.model, one, (x,))[-1]
            torch.testing.assert_close(out[t, q], expected)
    # BatchNorm sees other statistics than in the transductive batch: the outputs differ
    assert not torch.allclose(out, learner.predict(params, qx), atol=1e-3)


def bn_meta_learner(transductive: bool) -> SupervisedMetaLearner:
    recipe = recipe_from_dict(
        {
            "task": {"name": "miniimagenet", "ways": 3},
            "model": {"filters": 2, "layers": 1},
            "train": {"inner_optimizer": "adam", "inner_lr": 0.01},
            "eval": {"support_shots": 1, "query_shots": 2, "transductive": transductive},
        },
        source="test",
    )
    dist = MiniImageNetDistribution(ways=3, data=synthetic())
    return SupervisedMetaLearner.from_recipe(recipe, dist, torch.device("cpu"))


def test_modes_differ_for_batchnorm_and_agree_without_it(monkeypatch):
    bn = bn_meta_learner(transductive=False)
    assert bn.held_out.transductive is False
    non = bn.curve([0, 1], n_tasks=4)  # the recipe's mode
    trans = bn.curve([0, 1], n_tasks=4, transductive=True)
    assert non.steps == trans.steps == [0, 1] and non.n_tasks == trans.n_tasks == 4
    monkeypatch.setattr(meta_learners, "EVAL_BUDGET", 1)  # one task, one query example a call
    np.testing.assert_allclose(bn.curve([0, 1], n_tasks=4).mean, non.mean)
    # accuracies are coarse, so compare what decides them: the query outputs at step 0
    batch = bn.eval_batch(4)
    phi = stack({k: v.detach() for k, v in bn.model.named_parameters()}, 4)
    one_by_one = bn.learner.predict_each_with_support(phi, batch.support_x, batch.query_x)
    transductive = bn.learner.predict(phi, batch.query_x)
    assert not torch.allclose(transductive, one_by_one, atol=1e-3)
    # each mode's step-0 accuracy is the accuracy of that mode's outputs, task by task
    for outputs, curve in ((one_by_one, non), (transductive, trans)):
        accuracy = (outputs.argmax(-1) == batch.query_y).float().mean(-1)
        np.testing.assert_allclose(curve.per_task[0], accuracy.numpy(), atol=1e-6)

    recipe = recipe_from_dict(
        {"task": {"name": "sine"}, "model": {"hidden": [8, 8]}, "eval": {"query_shots": 7}},
        source="test",
    )
    mlp = SupervisedMetaLearner.from_recipe(recipe, SineDistribution(), torch.device("cpu"))
    t, n = mlp.curve([0, 1, 3], 10), mlp.curve([0, 1, 3], 10, transductive=False)
    np.testing.assert_allclose(t.mean, n.mean, rtol=1e-5)


# --- registry and recipes -------------------------------------------------------------------


def test_registered_and_the_recipes_are_the_papers():
    from metarl.registry import resolve_recipe, task_spec

    assert task_spec("miniimagenet").entry_point.endswith(":MiniImageNetDistribution")
    one, five = resolve_recipe("miniimagenet-5way-1shot"), resolve_recipe("miniimagenet-5way-5shot")
    for r in (one, five):
        assert r.task == {"name": "miniimagenet", "ways": 5}
        assert (r.train.inner_lr, r.supervised_settings().inner_batch, r.train.inner_steps) == (
            1e-3,
            10,
            8,
        )
        assert r.supervised_settings().support_shots == 15 and r.train.meta_iterations == 100_000
        assert r.supervised_eval().transductive is False and r.supervised_eval().query_shots == 1
        net = MiniImageNetDistribution(ways=5, data=synthetic()).build_model(**r.model)
        assert net[-1].in_features == 32 * 6 * 6
    assert (one.supervised_eval().support_shots, one.supervised_eval().inner_batch) == (1, 5)
    assert (five.supervised_eval().support_shots, five.supervised_eval().inner_batch) == (5, 15)
    twenty = resolve_recipe("omniglot-20way-5shot")
    assert (
        twenty.train.inner_lr,
        twenty.supervised_settings().inner_batch,
        twenty.train.inner_steps,
    ) == (
        5e-4,
        20,
        10,
    )
    assert twenty.train.meta_iterations == 200_000 and twenty.supervised_eval().inner_batch == 10


# --- the benchmark: the shipped split, and a complete set verified as the benchmark ------------


def test_the_shipped_split_is_ravi_and_larochelles():
    """The split CSVs shipped in the package (which `verify` and the import without CSVs
    read): 64 / 16 / 20 classes of 600 images, 60,000 distinct files, no class in two
    splits, each file named after its class."""
    files = benchmark_files()
    assert [len(files[s]) for s in SPLITS] == [64, 16, 20]
    assert {len(names) for table in files.values() for names in table.values()} == {600}
    every = [name for table in files.values() for names in table.values() for name in names]
    assert len(set(every)) == len(every) == 60_000
    classes = [c for s in SPLITS for c in files[s]]
    assert len(set(classes)) == 100
    assert all(
        name.startswith(label) and name.endswith(".jpg")
        for table in files.values()
        for label, names in table.items()
        for name in names
    )


def _benchmark_shaped(root: Path, short: int = 0) -> Path:
    """The compact form of the full benchmark (every class of the shipped split, 600 images
    each), its arrays sparse files of zeros, so nothing is written but the headers; the
    first training class `short` images short of 600."""
    folder = root / "miniimagenet" / "84x84"
    folder.mkdir(parents=True)
    for split, classes in benchmark_classes().items():
        counts = [600] * len(classes)
        counts[0] -= short if split == "train" else 0
        shape = (sum(counts), 84, 84, 3)
        np.lib.format.open_memmap(folder / f"{split}.npy", "w+", np.uint8, shape).flush()
        meta = {"format": 1, "source": "test", "classes": sorted(classes), "counts": counts}
        (folder / f"{split}.json").write_text(json.dumps(meta))
    return root


def test_verify_calls_the_complete_benchmark_the_benchmark(tmp_path):
    """A set holding the benchmark's classes in their splits, 600 images each, is named the
    Ravi & Larochelle benchmark with its counts; one image short, it is refused. (The real
    data, imported, is the first; `metarl data verify miniimagenet` says so on it.)"""
    found = verify(_benchmark_shaped(tmp_path / "full"))
    assert [c["classes"] for c in found.values()] == [64, 16, 20]
    assert [c["images"] for c in found.values()] == [38_400, 9_600, 12_000]
    assert all(c["per class"] == "600" for c in found.values())
    assert all(c["split"] == "Ravi & Larochelle benchmark" for c in found.values())
    first = sorted(benchmark_classes()["train"])[0]
    with pytest.raises(UserError, match=f"class {first} has 599 images; the benchmark has 600"):
        verify(_benchmark_shaped(tmp_path / "short", short=1))


def test_cli_train_and_eval_end_to_end(tmp_path):
    """Import tiny data, meta-train a small recipe on it and evaluate both ways, all by CLI."""
    root = tmp_path / "root"
    import_(write_folders(tmp_path / "src"), root, progress=False)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        f'[task]\nname = "miniimagenet"\nways = 3\ndata_dir = "{root}"\n'
        "[model]\nfilters = 2\nlayers = 1\n"
        '[train]\nmeta_iterations = 2\nmeta_batch = 2\ninner_steps = 2\ninner_optimizer = "adam"\n'
        "inner_lr = 0.001\ninner_beta1 = 0.0\nsupport_shots = 2\nquery_shots = 1\n"
        "[eval]\ntasks = 3\nsteps = [0, 2]\nsupport_shots = 1\nquery_shots = 2\n"
        "transductive = false\n"
    )
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    for flag, expected in (([], False), (["--transductive"], True)):
        result = runner.invoke(app, ["eval", str(run), "--json", *flag])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload["transductive"] is expected and payload["n_tasks"] == 3
        assert payload["steps"] == [0, 2] and payload["metric"] == "accuracy"
