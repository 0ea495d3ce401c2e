"""Data loaders: the fixed digits split, CIFAR's two layouts, tonic event data, and their errors."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saformer.data import Preprocess, load_dataset, load_digits
from saformer.errors import DataError


def test_digits_split_is_fixed_and_stratified():
    a, b = load_digits(), load_digits()
    assert (len(a.train), len(a.test)) == (1437, 360)
    assert torch.equal(a.test.labels, b.test.labels) and torch.equal(a.train.images, b.train.images)
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    x, y = next(a.test.batches(360, shuffle=False, augment=False, seed=0, device=torch.device("cpu")))
    assert x.shape == (360, 1, 8, 8) and x.min() >= 0 and x.max() <= 1 and x.dtype == torch.float32


def test_crop_and_flip_move_pixels_as_written():
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    pre = Preprocess(scale=1.0, crop_padding=1, hflip=True)
    out = pre.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x[0, 0], (1, 1, 1, 1))
    windows = {tuple(padded[i:i + 4, j:j + 4].flatten().tolist()) for i in range(3) for j in range(3)}
    windows |= {tuple(torch.tensor(w).reshape(4, 4).flip(-1).flatten().tolist()) for w in windows}
    for img in out:
        assert tuple(img[0].flatten().tolist()) in windows
    assert len({tuple(img.flatten().tolist()) for img in out}) > 5  # it is random


def write_image_tree(root, classes=("cat", "dog"), per_class=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_image_folder_tree(tmp_path):
    classes = [f"c{i}" for i in range(10)]
    write_image_tree(tmp_path, classes, per_class=2)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.classes == classes and ds.shape == (3, 32, 32)
    assert len(ds.train) == 20 and ds.train.labels.tolist() == [i // 2 for i in range(20)]
    first = np.asarray(Image.open(tmp_path / "train" / "c0" / "0.png")).transpose(2, 0, 1)
    np.testing.assert_array_equal(ds.train.images[0].numpy(), first)


def test_decoded_image_folders_are_cached_and_keyed_by_the_files(tmp_path, monkeypatch):
    """The second load reads the cache, not the images; a changed image, a corrupt cache file and
    SAFORMER_CACHE_DIR=off all lead back to decoding, and what is loaded is always the files'."""
    import saformer.data as data

    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    root = tmp_path / "tree"
    write_image_tree(root, [f"c{i}" for i in range(10)], per_class=2)
    first = load_dataset("cifar10", root)
    (cached,) = (tmp_path / "cache").glob("*.npz")
    decode = data._decode

    def refuse(*_args):
        raise AssertionError("decoded although the cache holds these files")

    monkeypatch.setattr(data, "_decode", refuse)
    second = load_dataset("cifar10", root)
    assert torch.equal(second.train.images, first.train.images) and torch.equal(second.test.labels, first.test.labels)
    assert second.classes == first.classes
    changed = np.full((32, 32, 3), 7, np.uint8)
    Image.fromarray(changed).save(root / "test" / "c3" / "1.png")
    with pytest.raises(AssertionError, match="decoded although"):  # a new key: the images are read
        load_dataset("cifar10", root)
    monkeypatch.setattr(data, "_decode", decode)
    third = load_dataset("cifar10", root)
    np.testing.assert_array_equal(third.test.images[7].numpy(), changed.transpose(2, 0, 1))
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    current = tmp_path / "cache" / f"image-folder-{data._fingerprint(root, data._list_image_folder(root, 'x')[1])}.npz"
    current.write_bytes(b"truncated")  # a corrupt entry is never trusted: decoded again, and replaced
    assert torch.equal(load_dataset("cifar10", root).test.images, third.test.images)
    assert current.stat().st_size > 1000
    monkeypatch.setenv(data.CACHE_ENV, "off")
    assert data.cache_dir() is None
    load_dataset("cifar10", root)
    assert not (Path.cwd() / "off").exists() and len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_torchvision_pickled_cifar(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"n{i}".encode() for i in range(10)]}, fh)
    ds = load_dataset("cifar10", tmp_path)
    assert len(ds.train) == 20 and len(ds.test) == 4 and ds.classes[9] == "n9"
    assert ds.test.images.shape == (4, 3, 32, 32)


def test_cifar_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="needs --data-dir"):
        load_dataset("cifar10", None)
    with pytest.raises(DataError, match=f"'{tmp_path / 'nope'}' does not exist"):
        load_dataset("cifar10", tmp_path / "nope")
    with pytest.raises(DataError, match="holds neither torchvision's 'cifar-10-batches-py/' release"):
        load_dataset("cifar10", tmp_path)
    write_image_tree(tmp_path / "two", classes=("a", "b"))
    with pytest.raises(DataError, match="has 2 class folders, expected 10"):
        load_dataset("cifar10", tmp_path / "two")
    write_image_tree(tmp_path / "mismatch", classes=("a", "b"))
    (tmp_path / "mismatch" / "test" / "b").rename(tmp_path / "mismatch" / "test" / "z")
    with pytest.raises(DataError, match=r"class folders of .* \['a', 'z'\] differ from train's \['a', 'b'\]"):
        load_dataset("cifar10", tmp_path / "mismatch")
    write_image_tree(tmp_path / "corrupt", classes=("a",))
    (tmp_path / "corrupt" / "train" / "a" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image '.*1\.png'"):
        load_dataset("cifar10", tmp_path / "corrupt")
    (tmp_path / "pickled" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "pickled" / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="missing file .*data_batch_1"):
        load_dataset("cifar10", tmp_path / "pickled")


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def write_dvsgesture(root, per_split=110, seed=0):
    """A small event set in tonic's DVSGesture layout: user folders of <class>.npy (x, y, p, t[ms])."""
    rng = np.random.default_rng(seed)
    base = root / "DVSGesture"
    counts = {}
    for folder in ("ibmGestureTrain", "ibmGestureTest"):
        for i in range(per_split):
            user = base / folder / f"user{i // 11:02d}_led"
            user.mkdir(parents=True, exist_ok=True)
            n = 50 + i
            ev = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                           np.sort(rng.integers(0, 1000, n))], axis=1)
            np.save(user / f"{i % 11}.npy", ev)
            counts[(folder, user.name, i % 11)] = n
        (base / f"{folder}.tar.gz").write_bytes(b"")  # tonic checks that the archive is present
    return counts


def test_dvsgesture_through_tonic(tmp_path):
    write_dvsgesture(tmp_path)
    ds = load_dataset("dvsgesture", tmp_path, time_steps=4)
    assert ds.frames and ds.shape == (2, 128, 128) and len(ds.classes) == 11
    assert len(ds.train) == 110 and len(ds.test) == 110
    events, label = ds.test.dataset.data[0], ds.test.dataset.targets[0]
    frames, y = ds.test.dataset[0]
    assert frames.shape == (4, 2, 128, 128) and y == label
    t = np.load(events)[:, 3]
    # tonic's ToFrame(n_time_bins) slices half-open intervals: events at the last timestamp fall
    # outside every bin (a tonic property, recorded here so that a change in it is noticed).
    assert int(frames.sum()) == int((t < t.max()).sum())
    x, yb = next(ds.train.batches(8, shuffle=True, augment=False, seed=0, device=torch.device("cpu")))
    assert x.shape == (8, 4, 2, 128, 128) and yb.dtype == torch.int64


def test_dvs_errors(tmp_path):
    with pytest.raises(DataError, match="needs --data-dir"):
        load_dataset("dvsgesture", None)
    with pytest.raises(DataError, match="DVSGesture' does not exist"):
        load_dataset("dvsgesture", tmp_path)
    (tmp_path / "DVSGesture" / "ibmGestureTrain").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no recordings \(\*\.npy\) under"):
        load_dataset("dvsgesture", tmp_path)
