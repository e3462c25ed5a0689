"""The UC Merced preset: its fixed seeded 80/20 split, its decode path, and what it sets up.

Split logic runs on a synthetic folder with UC Merced's 21 class names (no data needed). The
tests marked ``real`` read tiles out of ../shared/data/uc_merced.tar.gz (or
``$TRIBYOL_UCMERCED_TAR``) and are skipped, saying why, where the tarball is absent (a clean CI
clone may not have ../shared).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tribyol.data import DatasetNotFoundError, FolderImages, load_split
from tribyol.data import ucmerced as ucm
from tribyol.data.__main__ import main as data_main
from tribyol.data.images import decode_all, decode_square

REPO = Path(__file__).resolve().parents[2]
TARBALL = Path(os.environ.get("TRIBYOL_UCMERCED_TAR", REPO.parent / "shared/data/uc_merced.tar.gz"))
needs_tarball = pytest.mark.skipif(
    not TARBALL.is_file(),
    reason=f"UC Merced tarball {TARBALL} absent (set TRIBYOL_UCMERCED_TAR to its path)",
)
# The split every UC Merced result so far was made with: a change here changes every score.
REAL_SPLIT_SHA256 = "c57f7e2c1273"


def jpeg_bytes(seed: int, size: tuple[int, int] = (20, 24)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def fake_ucmerced(parent: Path, per_class: int = 10) -> Path:
    """``parent/uc_merced/<class>/<class>NN.jpg`` for the 21 classes; airplane01 == airplane02."""
    root = parent / ucm.FOLDER
    for c, name in enumerate(ucm.CLASSES):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            (root / name / f"{name}{k:02d}.jpg").write_bytes(jpeg_bytes(100 * c + k))
    airplane = root / "airplane"
    (airplane / "airplane02.jpg").write_bytes((airplane / "airplane01.jpg").read_bytes())
    return root


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_ucmerced(tmp_path_factory.mktemp("ucm"))


# -- the split -----------------------------------------------------------------------------------


def test_split_is_stratified_disjoint_and_complete(fake: Path) -> None:
    m = ucm.split_manifest(fake)
    train, test = set(m["train"]), set(m["test"])
    assert not train & test
    assert len(train | test) == 210
    per_class_test = Counter(name.split("/")[0] for name in test)
    per_class_train = Counter(name.split("/")[0] for name in train)
    assert per_class_test == {c: 2 for c in ucm.CLASSES}  # 20 % of 10, in every class
    assert per_class_train == {c: 8 for c in ucm.CLASSES}
    assert m["kept_together"] == [["airplane/airplane01.jpg", "airplane/airplane02.jpg"]]
    assert m["seed"] == ucm.SPLIT_SEED and len(m["sha256"]) == 64


def test_split_is_seeded_and_the_duplicate_pair_stays_together(fake: Path) -> None:
    assert ucm.split_manifest(fake) == ucm.split_manifest(fake)
    sides = set()
    tests = set()
    for seed in range(12):
        m = ucm.split_manifest(fake, seed=seed)
        pair = {("test" if f"airplane/airplane0{k}.jpg" in m["test"] else "train") for k in (1, 2)}
        assert len(pair) == 1, f"seed {seed} splits the identical pair"
        sides |= pair
        tests.add(tuple(m["test"]))
        assert Counter(n.split("/")[0] for n in m["test"]) == {c: 2 for c in ucm.CLASSES}
    assert sides == {"train", "test"}  # the pair is a real unit, not always parked in train
    assert len(tests) == 12  # each seed gives another split


def test_reader_serves_the_two_sides_from_dir_or_parent(fake: Path) -> None:
    m = ucm.split_manifest(fake)
    for root in (fake, fake.parent):
        train = load_split("ucmerced", root, "train")
        test = load_split("ucmerced", root, "test")
        assert train.images.shape == (168, 3, 256, 256) and train.images.dtype == torch.uint8
        assert test.images.shape == (42, 3, 256, 256)
        assert train.labels.bincount().tolist() == [8] * 21
        assert test.labels.bincount().tolist() == [2] * 21
        assert train.classes == list(ucm.CLASSES)
        assert test.info["split"]["test"] == m["test"]
        assert train.info["split"]["sha256"] == m["sha256"]
    assert load_split("ucmerced", fake, "pretrain").images.shape[0] == 168
    assert train.subset([0, 1]).info == train.info  # carried for the run record


def test_reader_says_what_is_wrong(tmp_path: Path, fake: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="holds neither the class folders"):
        load_split("ucmerced", tmp_path, "train")
    other = tmp_path / "other"
    for name in ("airplane", "cats"):
        (other / name).mkdir(parents=True)
        (other / name / "x.jpg").write_bytes(jpeg_bytes(0))
    with pytest.raises(DatasetNotFoundError, match="not UC Merced: cats"):
        load_split("ucmerced", other, "train")
    with pytest.raises(ValueError, match="train and test"):
        load_split("ucmerced", fake, "unlabeled")


def test_preset_views_stem_and_eval_split(fake: Path, tmp_path: Path) -> None:
    from tribyol.augment import MultiViewAugment
    from tribyol.data.pretrain import data_info_for, load_pretrain_data
    from tribyol.eval.data import load_eval_data
    from tribyol.nets.backbones import uses_small_stem
    from tribyol.resolve import load_config

    cfg = load_config(None, [("data.dataset", "ucmerced"), ("data.root", str(fake.parent)),
                             ("model.backbone", "resnet18"), ("runs_root", str(tmp_path))])
    data = load_pretrain_data(cfg)
    assert len(data) == 168 and data.images.shape[-1] == 256
    info = data_info_for(cfg, data)
    assert info.image_size == 224 and info.num_classes == 21
    assert info.mean == ucm.MEAN and info.std == ucm.STD
    views = MultiViewAugment(cfg.augment, info.image_size, info.mean, info.std)
    assert views.blur_p == [1.0, 0.1]  # BYOL's blur, on above 32 px
    out = views(data.images[:4], 3, torch.Generator().manual_seed(0))
    assert [v.shape for v in out] == [(4, 3, 224, 224)] * 3
    assert not uses_small_stem(info.image_size, cfg.model.small_stem)  # the 7x7 stem
    ev = load_eval_data("ucmerced", fake, image_size=224, channels=3)
    assert ev.test_split.startswith("test (split seed 0, sha256 ") and ev.num_classes == 21
    assert len(ev.train_indices) == 168 and len(ev.test_indices) == 42


def test_split_folder_cli_writes_a_folder_dataset(fake: Path, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "split"
    assert data_main(["split", str(fake), str(dest), "--seed", "0"]) == 0
    assert "168 train / 42 test" in capsys.readouterr().out
    m = json.loads((dest / "split.json").read_text())
    assert m["test"] == ucm.split_manifest(fake)["test"]  # the preset's split, as folders
    test = load_split("folder", dest, "test", image_size=32)
    train = load_split("folder", dest, "train", image_size=32)
    assert len(test) == 42 and len(train) == 168
    assert (dest / "test" / m["test"][0]).is_symlink()


def test_split_folder_never_writes_over_a_users_files(fake: Path, tmp_path: Path) -> None:
    from tribyol.data.folder_split import split_folder

    dest = tmp_path / "mine"
    (dest / "test").mkdir(parents=True)
    (dest / "split.json").write_text("my own notes")
    with pytest.raises(FileExistsError, match="already exist"):
        split_folder(fake, dest)
    assert (dest / "split.json").read_text() == "my own notes" and not (dest / "train").exists()
    with pytest.raises(SystemExit) as info:  # through the CLI: one usage error, exit 2
        data_main(["split", str(fake), str(dest)])
    assert info.value.code == 2


# -- real tiles ------------------------------------------------------------------------------------

SAMPLE = ("airplane/airplane01.jpg", "airplane/airplane02.jpg", "harbor/harbor10.jpg",
          "sparseresidential/sparseresidential45.jpg", "beach/beach00.jpg")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole tarball unpacked once (46 MB)."""
    if not TARBALL.is_file():
        pytest.skip(f"UC Merced tarball {TARBALL} absent (set TRIBYOL_UCMERCED_TAR to its path)")
    out = tmp_path_factory.mktemp("real")
    with tarfile.open(TARBALL) as tar:
        tar.extractall(out, filter="data")
    return out / ucm.FOLDER


@needs_tarball
def test_real_split_is_pinned(real: Path) -> None:
    m = ucm.split_manifest(real.parent)
    assert (m["num_train"], m["num_test"]) == (1680, 420)
    assert Counter(n.split("/")[0] for n in m["test"]) == {c: 20 for c in ucm.CLASSES}
    pair = [name in m["test"] for name in SAMPLE[:2]]
    assert pair[0] == pair[1]
    assert m["kept_together"] == [list(SAMPLE[:2])]
    assert m["sha256"].startswith(REAL_SPLIT_SHA256), "the UC Merced split changed"


@needs_tarball
def test_real_tiles_decode_the_same_on_every_path(real: Path) -> None:
    paths = [real / name for name in SAMPLE]
    sizes = [Image.open(p).size for p in paths]
    assert (242, 256) in sizes  # a tile that is not 256x256 is in the sample
    tv = decode_all(paths, 256, "torchvision")
    pil = decode_all(paths, 256, "pil")
    assert tv.shape == (5, 3, 256, 256)
    assert torch.equal(tv, pil)  # decode_jpeg gives PIL's pixels
    folder = FolderImages(real, image_size=256)  # what --dataset folder decodes, lazily
    index = {str(p.relative_to(real)): i for i, (p, _) in enumerate(folder.samples)}
    lazy, _ = folder[[index[name] for name in SAMPLE]]
    assert torch.equal(tv, lazy)
    assert torch.equal(tv[0], tv[1])  # airplane01 and airplane02: pixel-identical
    assert not torch.equal(tv[0], tv[4])
    with pytest.raises(ValueError, match="decoder"):
        decode_square(paths[0], 256, "cv2")


def test_the_run_and_the_eval_records_name_the_split(fake: Path, tmp_path: Path) -> None:
    """run.json carries the split's seed and hash; eval records name the split they scored."""
    import json

    from tribyol.cli import main

    runs = tmp_path / "runs"
    assert main(["pretrain", "--dataset", "ucmerced", "--data-root", str(fake), "--batch-size", "16",
                 "--max-steps", "1", "--precision", "32", "--accelerator", "cpu", "--runs-root", str(runs),
                 "--name", "u", "--set", "data.image_size=16", "--set", "model.width=8",
                 "--set", "train.progress_bar=false"]) == 0
    sha = ucm.split_manifest(fake)["sha256"]
    record = json.loads((runs / "u" / "run.json").read_text())
    assert record["data_split"] == {"seed": ucm.SPLIT_SEED, "sha256": sha}
    store = tmp_path / "r.jsonl"
    assert main(["eval", "knn", str(runs / "u"), "--data-root", str(fake), "--k", "5",
                 "--force-small-test", "--store", str(store), "--cache-dir", str(tmp_path / "c")]) == 0
    assert json.loads(store.read_text())["test_split"] == f"test (split seed 0, sha256 {sha[:12]})"


def test_data_commands_report_a_missing_folder_in_one_line(tmp_path: Path, capsys) -> None:
    assert data_main(["ucmerced-split", str(tmp_path / "nope"), str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ucmerced not found") and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_synthetic_tiles_decode_the_same_on_every_path(tmp_path: Path) -> None:
    """What the real-tile test checks, on CI too (no tarball there): a 256x256 tile takes the
    decoder's fast path, a 242x256 one is resized; both paths give PIL's pixels."""
    paths = []
    for i, size in enumerate([(256, 256), (242, 256), (256, 256)]):
        path = tmp_path / "a" / f"t{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(jpeg_bytes(i, size))
        paths.append(path)
    tv = decode_all(paths, 256, "torchvision")
    pil = decode_all(paths, 256, "pil")
    assert tv.shape == (3, 3, 256, 256) and torch.equal(tv, pil)
    lazy, _ = FolderImages(tmp_path, image_size=256)[[0, 1, 2]]
    assert torch.equal(tv, lazy)
    assert not torch.equal(tv[0], tv[2])
