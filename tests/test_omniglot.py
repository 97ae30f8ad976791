"""Omniglot: file checks, import, fetch's checksum, the decode cache, episodes, the conv net
under the vmapped inner loop, and (when $METARL_DATA holds it) the real dataset."""

from __future__ import annotations

import copy
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from metarl.cli import app
from metarl.config import OptimizerName
from metarl.data import omniglot
from metarl.data.files import md5sum
from metarl.data.omniglot import (
    LAYOUT,
    OmniglotImages,
    PartLayout,
    fetch,
    import_,
    load,
    verify,
)
from metarl.data.root import data_root
from metarl.distributions.omniglot import OmniglotDistribution
from metarl.errors import ConfigError, UserError
from metarl.learners.inner_loop import InnerLoop, InnerOptimizer
from metarl.protocol import Split
from metarl.registry import make_distribution

SMALL = (
    PartLayout("images_background", alphabets=2, characters=3),
    PartLayout("images_evaluation", alphabets=1, characters=2),
)
runner = CliRunner()


def write_part(folder: Path, part: PartLayout, first_id: int, drop: int = 0) -> None:
    """An extracted half in the real layout: tiny 1-bit PNGs, white with a black square whose
    place encodes the character, so decoding can be checked."""
    char_id = first_id
    per_alphabet = [part.characters // part.alphabets] * part.alphabets
    per_alphabet[-1] += part.characters - sum(per_alphabet)
    for a, count in enumerate(per_alphabet):
        for c in range(1, count + 1):
            d = folder / part.name / f"Alphabet_{a}" / f"character{c:02d}"
            d.mkdir(parents=True)
            for drawer in range(1, part.drawings + 1 - (drop if char_id == first_id else 0)):
                im = Image.new("1", (14, 14), 1)
                im.paste(0, (char_id % 7, 0, char_id % 7 + 6, 14))
                im.save(d / f"{char_id:04d}_{drawer:02d}.png")
            char_id += 1


def zip_part(folder: Path, name: str) -> Path:
    """Zip an extracted half as the published archives are (stored, directory entries)."""
    archive = folder / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted((folder / name).rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    shutil.rmtree(folder / name)
    return archive


def fake_omniglot(folder: Path, *, zipped: bool = True, drop: int = 0) -> Path:
    first = 1
    for part in SMALL:
        write_part(folder, part, first, drop if part is SMALL[1] else 0)
        first += part.characters
        if zipped:
            zip_part(folder, part.name)
    return folder


@pytest.fixture
def fake_src(tmp_path: Path) -> Path:
    return fake_omniglot(tmp_path / "src")


# --- the data root ------------------------------------------------------------------------


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("METARL_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "flag") == tmp_path / "flag"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("METARL_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_root() == tmp_path / "cache" / "metarl"


# --- verify / import / fetch --------------------------------------------------------------


def test_import_then_verify_counts(fake_src, tmp_path):
    root = tmp_path / "root"
    found = import_(fake_src, root, SMALL)
    assert (root / "omniglot" / "images_background.zip").is_file()
    counts = list(found.values())
    assert counts[0] == {"alphabets": 2, "characters": 3, "drawings": 60}
    assert counts[1] == {"alphabets": 1, "characters": 2, "drawings": 40}
    assert verify(root, SMALL) == found
    assert not list((root / "omniglot").glob(".*part*"))  # no temporary files left behind


def test_import_of_extracted_folders(tmp_path):
    src = fake_omniglot(tmp_path / "src", zipped=False)
    root = tmp_path / "root"
    import_(src, root, SMALL)
    assert (root / "omniglot" / "images_evaluation" / "Alphabet_0").is_dir()
    assert verify(root, SMALL)


def test_missing_file_names_it_and_the_fix(fake_src, tmp_path):
    root = tmp_path / "root"
    import_(fake_src, root, SMALL)
    (root / "omniglot" / "images_evaluation.zip").unlink()
    with pytest.raises(UserError, match=r"images_evaluation\.zip is missing.*metarl data import"):
        verify(root, SMALL)


def test_truncated_zip_is_reported(fake_src, tmp_path):
    archive = fake_src / "images_background.zip"
    archive.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(UserError, match=r"images_background\.zip is not a readable zip"):
        import_(fake_src, tmp_path / "root", SMALL)
    assert not (tmp_path / "root" / "omniglot" / "images_background.zip").exists()


def test_damaged_member_fails_the_crc_check(fake_src, tmp_path):
    archive = fake_src / "images_evaluation.zip"
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside some stored PNG
    archive.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"images_evaluation\.zip: member .* is corrupt"):
        import_(fake_src, tmp_path / "root", SMALL)


def test_missing_drawings_are_named(tmp_path):
    src = fake_omniglot(tmp_path / "src", drop=1)
    with pytest.raises(UserError, match=r"character01 has 19 drawings, expected 20"):
        import_(src, tmp_path / "root", SMALL)


def test_wrong_counts_against_the_real_layout(fake_src):
    with pytest.raises(UserError, match=r"2 alphabets, expected 30; 3 characters, expected 964"):
        import_(fake_src, fake_src.parent / "root")


def test_fetch_checks_md5_and_installs(fake_src, tmp_path):
    url = (fake_src / "{part}.zip").as_uri().replace("%7B", "{").replace("%7D", "}")
    root = tmp_path / "root"
    with pytest.raises(UserError, match="md5 .* does not match the published"):
        fetch(root, url=url, layout=SMALL, progress=False)
    assert not any((root / "omniglot").iterdir())  # the bad download was not installed

    md5 = {p.name: md5sum(fake_src / f"{p.name}.zip") for p in SMALL}
    found = fetch(root, url=url, md5=md5, layout=SMALL, progress=False)
    assert len(found) == 2


def test_fetch_network_failure_is_one_clear_error(tmp_path):
    url = (tmp_path / "nowhere").as_uri() + "/{part}.zip"
    with pytest.raises(UserError, match=r"could not download .*images_background\.zip.*import"):
        fetch(tmp_path / "root", url=url, progress=False)


# --- the decode cache ---------------------------------------------------------------------


def test_decoded_once_then_memory_mapped(fake_src, tmp_path, monkeypatch):
    root = tmp_path / "root"
    import_(fake_src, root, SMALL)
    data = load(root, SMALL, progress=False)
    assert data.images.shape == (5, 20, 28, 28) and data.images.dtype == np.uint8
    assert data.background == 3
    assert data.names[0] == "images_background/Alphabet_0/character01"
    # strokes are bright: the black bar of character 1 sits at columns 1..6 of 14
    assert data.images[0, 0, :, 4:12].mean() > 200 and data.images[0, 0, :, 16:].mean() < 10
    meta = json.loads((root / "omniglot" / "omniglot28.json").read_text())
    assert meta["names"] == data.names

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(omniglot, "_decode", no_decoding)
    again = load(root, SMALL, progress=False)
    assert isinstance(again.images, np.memmap)
    np.testing.assert_array_equal(again.images, data.images)


def test_reimport_invalidates_the_cache_and_damage_rebuilds_it(fake_src, tmp_path):
    root = tmp_path / "root"
    import_(fake_src, root, SMALL)
    first = np.array(load(root, SMALL, progress=False).images)
    import_(fake_src, root, SMALL)
    assert not (root / "omniglot" / "omniglot28.npy").exists()
    load(root, SMALL, progress=False)
    (root / "omniglot" / "omniglot28.json").write_text("{not json")
    np.testing.assert_array_equal(load(root, SMALL, progress=False).images, first)


def test_a_member_that_is_not_a_png_fails_import_and_verify(tmp_path):
    src = fake_omniglot(tmp_path / "src", zipped=False)
    bad = next((src / "images_evaluation").rglob("*.png"))
    good = bad.read_bytes()
    bad.write_bytes(b"GIF89a, not a png")
    with pytest.raises(UserError, match=rf"member .*/{bad.name} is not a PNG image"):
        import_(src, tmp_path / "root", SMALL)
    bad.write_bytes(good)
    import_(src, tmp_path / "root", SMALL)
    installed = tmp_path / "root" / "omniglot" / "images_evaluation"
    if not installed.is_dir():  # installed as a zip: rewrite that member there
        archive = installed.with_suffix(".zip")
        with zipfile.ZipFile(archive) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        name = next(n for n in members if n.endswith(bad.name))
        members[name] = b"GIF89a, not a png"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for n, data in members.items():
                zf.writestr(n, data)
    else:
        next(installed.rglob(bad.name)).write_bytes(b"GIF89a, not a png")
    with pytest.raises(UserError, match=rf"{bad.name} is not a PNG image"):
        verify(tmp_path / "root", SMALL)


def test_unreadable_png_names_the_file(tmp_path):
    src = fake_omniglot(tmp_path / "src", zipped=False)
    bad = next((src / "images_evaluation").rglob("*.png"))
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but broken")  # the signature, then garbage
    root = tmp_path / "root"
    import_(src, root, SMALL)
    with pytest.raises(UserError, match=rf"{bad.name}: not a readable PNG"):
        load(root, SMALL, progress=False)


def test_no_data_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="metarl data import omniglot"):
        OmniglotDistribution(data_dir=str(tmp_path))


# --- episodes -----------------------------------------------------------------------------


def synthetic(characters: int = 40, background: int = 25) -> OmniglotImages:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(characters, 20, 28, 28), dtype=np.uint8)
    return OmniglotImages(images, background, [f"c{i}" for i in range(characters)])


@pytest.fixture(scope="module")
def dist() -> OmniglotDistribution:
    return OmniglotDistribution(ways=5, train_classes=30, val_classes=5, data=synthetic())


def test_paper_split_sizes_and_rotations(dist):
    train, val, test = (dist.classes[s] for s in (Split.TRAIN, Split.VAL, Split.TEST))
    assert (len(train), len(val), len(test)) == (25 * 4, 5, 10)
    assert sorted(set(train[:, 1])) == [0, 1, 2, 3] and set(val[:, 1]) == set(test[:, 1]) == {0}
    chars = [set(c[:, 0]) for c in (train, val, test)]
    assert not (chars[0] & chars[1]) and not (chars[0] & chars[2]) and not (chars[1] & chars[2])
    assert set().union(*chars) == set(range(40))


def test_background_split_tests_on_the_evaluation_half():
    d = OmniglotDistribution(split_mode="background", val_classes=5, data=synthetic())
    assert set(d.classes[Split.TEST][:, 0]) == set(range(25, 40))
    assert len(d.classes[Split.TRAIN]) == 20 * 4


def test_episode_shapes_labels_and_pixels(dist):
    rng = np.random.default_rng(1)
    tasks = dist.sample(3, rng, Split.TRAIN)
    batch = dist.episodes(tasks, rng, support=2, query=3)
    assert batch.support_x.shape == (3, 10, 1, 28, 28) and batch.support_x.dtype == torch.float32
    assert batch.query_x.shape == (3, 15, 1, 28, 28)
    assert batch.support_y.dtype == torch.int64
    for y, shots in ((batch.support_y, 2), (batch.query_y, 3)):
        assert (torch.bincount(y[0], minlength=5) == shots).all()
    # every support image is its class's character, turned, at one of its first two drawings
    images = torch.from_numpy(synthetic().images).float() / 255
    task = tasks[0]
    for x, label in zip(batch.support_x[0], batch.support_y[0], strict=True):
        c, k = task.characters[label], task.rotations[label]
        candidates = [torch.rot90(images[c, d], k) for d in task.drawings[label][:2]]
        assert any(torch.equal(x[0], cand) for cand in candidates)
    json.dumps(task.to_dict())


def test_sampling_depends_only_on_the_generator(dist):
    a = dist.sample(4, np.random.default_rng(5), Split.TEST)
    b = dist.sample(4, np.random.default_rng(5), Split.TEST)
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]
    assert all(set(t.rotations) == {0} for t in a)


def test_bad_shots_and_ways(dist):
    tasks = dist.sample(1, np.random.default_rng(0), Split.VAL)
    with pytest.raises(ConfigError, match="support \\+ query <= 20"):
        dist.episodes(tasks, np.random.default_rng(0), support=15, query=6)
    with pytest.raises(ConfigError, match="task.ways = 6"):
        OmniglotDistribution(ways=6, train_classes=30, val_classes=5, data=synthetic())
    with pytest.raises(ConfigError, match="split_mode"):
        OmniglotDistribution(split_mode="lake", data=synthetic())


# --- the conv net under the vmapped inner loop --------------------------------------------


def test_vmapped_conv_adaptation_equals_per_task_loop(dist):
    """Per-task BatchNorm statistics under vmap: the vmapped learner equals a deep copy of the
    network trained task by task with torch.optim.Adam (beta1 = 0, as the paper)."""
    torch.manual_seed(0)
    model = dist.build_model(filters=8)
    assert not list(model.buffers())  # no running statistics to share across tasks
    rng = np.random.default_rng(2)
    batch = dist.episodes(dist.sample(3, rng, Split.TRAIN), rng, support=2, query=1)
    lr, steps, inner_batch = 1e-3, 4, 5
    learner = InnerLoop(
        model, "cross_entropy", InnerOptimizer(OptimizerName.ADAM, lr, beta1=0.0), inner_batch
    )
    phi = {k: v.detach() for k, v in model.named_parameters()}
    adapted = learner.adapt(phi, batch, steps)
    for i in range(batch.num_tasks):
        m = copy.deepcopy(model)
        opt = torch.optim.Adam(m.parameters(), lr=lr, betas=(0.0, 0.999))
        x, y = batch.support_x[i], batch.support_y[i]
        for t in range(steps):
            idx = (torch.arange(inner_batch) + t * inner_batch) % x.shape[0]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x[idx]), y[idx]).backward()
            opt.step()
        for k, v in m.named_parameters():
            torch.testing.assert_close(adapted[k][i], v.detach(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(adapted["0.weight"][0], phi["0.weight"])


# --- the CLI and the registry -------------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["data", "verify", "omniglot", "--data-dir", "EMPTY"], "images_background.zip is missing"),
        (["data", "import", "omniglot", "SRC", "--data-dir", "ROOT"], "expected 30"),
        (["data", "import", "omniglot", "/no/such", "--data-dir", "ROOT"], "is not a folder"),
        (["data", "verify", "omnyglot"], "unknown dataset 'omnyglot'"),
    ],
)
def test_data_cli_bad_input_exits_2_with_one_line(fake_src, tmp_path, args, message):
    paths = {"EMPTY": tmp_path / "empty", "SRC": fake_src, "ROOT": tmp_path / "root"}
    result = runner.invoke(app, [str(paths.get(a, a)) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_omniglot_is_registered_and_the_recipe_resolves():
    from metarl.registry import resolve_recipe, task_spec

    assert task_spec("omniglot").entry_point == "metarl.distributions.omniglot:OmniglotDistribution"
    recipe = resolve_recipe("omniglot-5way-1shot")
    assert recipe.task["ways"] == 5 and recipe.supervised_settings().inner_beta1 == 0.0
    held_out = recipe.supervised_eval()
    assert held_out.support_shots == 1 and held_out.inner_batch == 5


# --- the data every test run has: the real set, else the synthetic one --------------------


def test_the_omniglot_root_decodes_and_splits_as_the_real_layout(omniglot_root):
    """`omniglot_root` (tests/conftest.py) is $METARL_DATA's real Omniglot or, without it, the
    synthetic set of scripts/tools/make_synthetic_omniglot.py: either verifies, decodes and
    splits as the published archives do, so the recipes and the demo's evaluation run on it."""
    found = verify(omniglot_root)
    assert [c["characters"] for c in found.values()] == [p.characters for p in LAYOUT]
    data = load(omniglot_root, progress=False)
    assert data.images.shape == (1623, 20, 28, 28) and data.background == 964
    d = make_distribution("omniglot", data_dir=str(omniglot_root))
    assert {s.value: len(c) for s, c in d.classes.items()} == {
        "train": 4400,
        "val": 100,
        "test": 423,
    }
    # characters differ in shape: a drawing is nearer its own character's mean than most
    means = data.images.reshape(1623, 20, -1).astype(np.float32).mean(1)
    queries = data.images[:200, 0].reshape(200, -1).astype(np.float32)
    nearest = ((queries[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == np.arange(200)).mean() > 0.5
    rng = np.random.default_rng(0)
    batch = d.episodes(d.sample(5, rng, Split.TEST), rng, support=1, query=1, evaluation=True)
    assert batch.support_x.shape == (5, 5, 1, 28, 28)
    assert float(batch.support_x.min()) >= 0.0 and float(batch.support_x.max()) <= 1.0


def test_cli_verify_states_both_halves(omniglot_root):
    """`metarl data verify omniglot` on the data every test run has (the real set in place
    where $METARL_DATA holds it)."""
    result = runner.invoke(app, ["data", "verify", "omniglot", "--data-dir", str(omniglot_root)])
    assert result.exit_code == 0, result.output
    assert "964 characters" in result.stdout and "659 characters" in result.stdout
