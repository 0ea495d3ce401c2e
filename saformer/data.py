"""Data sets: scikit-learn digits (default, no download), CIFAR-10/100, DVS event data via tonic.

Static images live in memory as uint8 tensors and are augmented and normalised batch-wise on the
training device (a per-image CPU pipeline cannot feed a GPU at thousands of images/s). Event data
is binned into T frames by tonic and served by a DataLoader.

The digits split is fixed: ``train_test_split(test_size=0.2, stratify=labels, random_state=0)``
over scikit-learn's 1,797 images gives 1,437 training and 360 test images.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch

from saformer.errors import DataError

DATASETS = ("digits", "cifar10", "cifar100", "dvsgesture", "cifar10dvs")
EVENT_DATASETS = ("dvsgesture", "cifar10dvs")  # T event frames per sample; the others: one static image
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp"}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Preprocess:
    """uint8 -> float: x / scale, then (x - mean) / std per channel; optional pad-crop and flip."""

    scale: float
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_padding: int = 0
    hflip: bool = False

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / self.scale
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop with zero padding and random horizontal flip, on a (B, C, H, W) batch."""
        b, _, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(b, device=x.device)[:, None, None, None]
            chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, chan, rows, cols]
        if self.hflip:
            flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


class Split(Protocol):
    def __len__(self) -> int: ...

    def batches(self, batch_size: int, shuffle: bool, augment: bool, seed: int, device: torch.device,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``batch_size`` (the global batch); with ``shard`` (rank, world) this rank's
        share of each: the same order on every rank (same seed), disjoint slices."""
        ...


@dataclass
class TensorSplit:
    """An in-memory split of uint8 images (M, C, H, W) and int64 labels (M,)."""

    images: torch.Tensor
    labels: torch.Tensor
    preprocess: Preprocess
    _device_cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size, shuffle, augment, seed, device, shard=(0, 1)):
        rank, world = shard
        key = str(device)
        if key not in self._device_cache:  # move the whole split once; CIFAR-10 is 150 MB
            self._device_cache.clear()
            self._device_cache[key] = (self.images.to(device), self.labels.to(device))
        images, labels = self._device_cache[key]
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=gen) if shuffle else torch.arange(len(self))
        order = order.to(device)
        for start in range(0, len(self), batch_size):
            chunk = order[start:start + batch_size]
            if len(chunk) < world:  # a last batch smaller than the number of ranks: every rank skips it
                break
            idx = chunk[rank::world]
            x = images[idx]
            if augment:
                x = self.preprocess.augment(x, gen)
            yield self.preprocess.normalize(x), labels[idx]


@dataclass
class FrameSplit:
    """A split of event recordings binned into frames (T, C, H, W) by a torch Dataset."""

    dataset: torch.utils.data.Dataset
    workers: int = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size, shuffle, augment, seed, device, shard=(0, 1)):
        rank, world = shard
        gen = torch.Generator().manual_seed(seed)
        if world > 1:
            sampler = torch.utils.data.DistributedSampler(self.dataset, world, rank, shuffle=shuffle, seed=seed)
            loader = torch.utils.data.DataLoader(self.dataset, batch_size=max(1, batch_size // world), sampler=sampler,
                                                 num_workers=self.workers)
        else:
            loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, shuffle=shuffle,
                                                 generator=gen, num_workers=self.workers)
        for x, y in loader:
            yield x.to(device, non_blocking=True).float(), y.to(device, non_blocking=True).long()


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    classes: list[str]
    shape: tuple[int, int, int]  # (C, H, W) of one frame
    frames: bool = False  # event frames (B, T, C, H, W) instead of static images (B, C, H, W)


# ---- digits ------------------------------------------------------------------------------------
def load_digits() -> Dataset:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = bunch.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target, test_size=0.2,
                                              stratify=bunch.target, random_state=0)
    pre = Preprocess(scale=16.0, crop_padding=1)
    return Dataset("digits", _tensor_split(x_tr, y_tr, pre), _tensor_split(x_te, y_te, pre),
                   [str(c) for c in range(10)], (1, 8, 8))


def _tensor_split(x: np.ndarray, y: np.ndarray, pre: Preprocess) -> TensorSplit:
    return TensorSplit(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, np.int64)), pre)


# ---- CIFAR -------------------------------------------------------------------------------------
def load_cifar(data_dir: str | Path | None, num_classes: int, download: bool = False) -> Dataset:
    """CIFAR-10/100 from torchvision's pickled release or from an image-folder tree.

    Accepted layouts under ``data_dir``: ``cifar-10-batches-py/`` (or ``cifar-100-python/``), the
    same folder given directly, or ``train/<class>/*`` and ``test/<class>/*`` image folders.
    """
    name = f"cifar{num_classes}"
    if data_dir is None:
        raise DataError(f"{name} needs --data-dir (torchvision's pickled release or train/ and test/ image folders)")
    root = Path(data_dir)
    if download:
        _download_cifar(root, num_classes)
    if not root.is_dir():
        raise DataError(f"{name}: data directory '{root}' does not exist")
    pickled = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    for candidate in (root / pickled, root):
        if (candidate / ("test_batch" if num_classes == 10 else "test")).is_file():
            return _load_cifar_pickled(candidate, num_classes)
    if (root / "train").is_dir() and (root / "test").is_dir():
        ds = load_image_folder(root, name)
        if len(ds.classes) != num_classes:
            raise DataError(f"{name}: '{root}/train' has {len(ds.classes)} class folders, expected {num_classes}")
        return ds
    raise DataError(
        f"{name}: '{root}' holds neither torchvision's '{pickled}/' release nor 'train/<class>/' and "
        f"'test/<class>/' image folders")


def _download_cifar(root: Path, num_classes: int) -> None:
    try:
        import torchvision
    except ImportError:
        raise DataError("--download uses torchvision, which is not installed; install it or pass a "
                        "--data-dir that already holds the data") from None
    cls = torchvision.datasets.CIFAR10 if num_classes == 10 else torchvision.datasets.CIFAR100
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(f"downloading CIFAR-{num_classes} into '{root}' failed: {exc}") from None


def _cifar_preprocess() -> Preprocess:
    return Preprocess(scale=255.0, mean=CIFAR_MEAN, std=CIFAR_STD, crop_padding=4, hflip=True)


def _load_cifar_pickled(folder: Path, num_classes: int) -> Dataset:
    if num_classes == 10:
        train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
        test_files, meta_file, label_key, names_key = [folder / "test_batch"], folder / "batches.meta", b"labels", b"label_names"
    else:
        train_files, test_files = [folder / "train"], [folder / "test"]
        meta_file, label_key, names_key = folder / "meta", b"fine_labels", b"fine_label_names"

    def read(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            if not f.is_file():
                raise DataError(f"CIFAR-{num_classes}: missing file '{f}'")
            try:
                with open(f, "rb") as fh:
                    entry = pickle.load(fh, encoding="bytes")
                xs.append(np.asarray(entry[b"data"], np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(entry[label_key], np.int64))
            except Exception as exc:
                raise DataError(f"CIFAR-{num_classes}: '{f}' is not a valid CIFAR pickle batch ({exc})") from None
        return np.concatenate(xs), np.concatenate(ys)

    x_tr, y_tr = read(train_files)
    x_te, y_te = read(test_files)
    classes = [str(i) for i in range(num_classes)]
    if meta_file.is_file():
        with open(meta_file, "rb") as fh:
            classes = [c.decode() for c in pickle.load(fh, encoding="bytes")[names_key]]
    pre = _cifar_preprocess()
    return Dataset(f"cifar{num_classes}", _tensor_split(x_tr, y_tr, pre), _tensor_split(x_te, y_te, pre),
                   classes, (3, 32, 32))


CACHE_ENV = "SAFORMER_CACHE_DIR"  # decoded image folders are kept here; "off" keeps none
CACHE_VERSION = 1


def cache_dir() -> Path | None:
    """$SAFORMER_CACHE_DIR, else $XDG_CACHE_HOME/saformer (~/.cache/saformer); None when "off"."""
    value = os.environ.get(CACHE_ENV, "")
    if value == "off":
        return None
    if value:
        return Path(value)
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "saformer"
    except RuntimeError:  # no home directory to be found (a bare container): no cache
        return None


def _list_image_folder(root: Path, name: str) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """The class names and, per split, every image file with its label, checked before decoding."""
    classes: list[str] | None = None
    listing = {}
    for split in ("train", "test"):
        folder = root / split
        found = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not found:
            raise DataError(f"{name}: '{folder}' has no class sub-folders")
        if classes is None:
            classes = found
        elif found != classes:
            raise DataError(f"{name}: class folders of '{folder}' {found} differ from train's {classes}")
        listing[split] = []
        for label, cls in enumerate(classes):
            files = sorted(p for p in (folder / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"{name}: class folder '{folder / cls}' holds no images")
            listing[split] += [(f, label) for f in files]
    return classes, listing


def _fingerprint(root: Path, listing: dict[str, list[tuple[Path, int]]]) -> str:
    """Changes when any file is added, removed, renamed, resized or touched: the cache's key."""
    h = hashlib.sha256(f"v{CACHE_VERSION} {root.resolve()}\n".encode())
    for split, files in listing.items():
        for f, label in files:
            st = f.stat()
            h.update(f"{split}/{f.parent.name}/{f.name} {label} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _decode(files: list[tuple[Path, int]], name: str, what: str) -> np.ndarray:
    """Decode to one (M, H, W, 3) uint8 array. Serially: on 32x32 JPEGs a thread pool is slower
    (measured: 10,000 CIFAR images 1.5-2.0 s on one thread, 2.3 s on two, 3.2 s on four)."""
    from PIL import Image
    from tqdm.auto import tqdm

    def read(f: Path) -> np.ndarray:
        try:
            with Image.open(f) as img:
                return np.asarray(img.convert("RGB"), np.uint8)
        except Exception as exc:
            raise DataError(f"{name}: cannot read image '{f}' ({exc})") from None

    arrays = [read(f) for f, _ in tqdm(files, desc=f"decoding {what}", leave=False,
                                        disable=None if len(files) > 5000 else True)]
    shape = arrays[0].shape
    for (f, _), arr in zip(files, arrays):
        if arr.shape != shape:
            raise DataError(f"{name}: image '{f}' is {arr.shape[1]}x{arr.shape[0]}, others are {shape[1]}x{shape[0]}")
    return np.stack(arrays)


def load_image_folder(root: Path, name: str) -> Dataset:
    """``root/train/<class>/*`` and ``root/test/<class>/*``; class index = sorted folder order.

    Decoding 60,000 CIFAR JPEGs takes about 10 s, and every stage (train, quantize, export, golden)
    loads the data again; so the decoded arrays are kept in :func:`cache_dir`, keyed by every
    file's name, size and modification time, and read back in about 2 s (measured, the listing
    included). A cache that cannot be read or written is ignored (the images are decoded); the
    images are always the key.
    """
    classes, listing = _list_image_folder(root, name)
    key = _fingerprint(root, listing)
    cache = cache_dir()
    path = None if cache is None else cache / f"image-folder-{key}.npz"
    arrays = None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key and list(z["classes"]) == classes:
                    arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except Exception:  # a truncated or foreign file: decode again and replace it
            arrays = None
    if arrays is None:
        arrays = {}
        for split in ("train", "test"):
            arrays[f"x_{split}"] = _decode(listing[split], name, f"{name} {split}").transpose(0, 3, 1, 2)
            arrays[f"y_{split}"] = np.asarray([label for _, label in listing[split]], np.int64)
        if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
            h, w = arrays["x_test"].shape[2:]
            raise DataError(f"{name}: test images are {w}x{h}, train images "
                            f"{arrays['x_train'].shape[3]}x{arrays['x_train'].shape[2]}")
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
                np.savez(tmp, key=np.asarray(key), classes=np.asarray(classes), **arrays)
                os.replace(tmp, path)
            except OSError:
                pass  # a read-only home: no cache, the same data
    pre = _cifar_preprocess()
    _, _, h, w = arrays["x_train"].shape
    return Dataset(name, _tensor_split(arrays["x_train"], arrays["y_train"], pre),
                   _tensor_split(arrays["x_test"], arrays["y_test"], pre), classes, (3, h, w))


# ---- neuromorphic ------------------------------------------------------------------------------
class _ToFrameTensor:
    """tonic events -> float tensor (T, 2, H, W) of per-bin event counts."""

    def __init__(self, sensor_size: tuple[int, int, int], time_steps: int) -> None:
        import tonic

        self.to_frame = tonic.transforms.ToFrame(sensor_size=sensor_size, n_time_bins=time_steps)

    def __call__(self, events):
        return torch.from_numpy(np.asarray(self.to_frame(events), np.float32))


def load_dvs(name: str, data_dir: str | Path | None, time_steps: int, workers: int = 0) -> Dataset:
    """DVS128 Gesture or CIFAR10-DVS from files the user has, via tonic, binned into T frames.

    ``data_dir`` is tonic's ``save_to`` folder: it holds ``DVSGesture/`` or ``CIFAR10DVS/``.
    CIFAR10-DVS has no official split: a fixed 90/10 split per class (seed 0) is used.
    """
    try:
        import tonic
    except ImportError:
        raise DataError(f"{name} needs the 'tonic' package (pip install tonic)") from None
    if data_dir is None:
        raise DataError(f"{name} needs --data-dir: tonic's save_to folder holding the recordings")
    root = Path(data_dir)
    cls = tonic.datasets.DVSGesture if name == "dvsgesture" else tonic.datasets.CIFAR10DVS
    folder = root / cls.__name__
    if not folder.is_dir():
        raise DataError(f"{name}: '{folder}' does not exist (expected tonic's layout under --data-dir '{root}')")
    transform = _ToFrameTensor(cls.sensor_size, time_steps)
    try:
        if name == "dvsgesture":
            for split in ("ibmGestureTrain", "ibmGestureTest"):
                if not any((folder / split).glob("**/*.npy")):
                    raise DataError(f"{name}: no recordings (*.npy) under '{folder / split}'")
            train = cls(str(root), train=True, transform=transform)
            test = cls(str(root), train=False, transform=transform)
        else:
            full = cls(str(root), transform=transform)
            targets = np.asarray(full.targets)
            rng = np.random.default_rng(0)
            test_idx = np.concatenate([rng.permutation(np.flatnonzero(targets == c))[: max(1, (targets == c).sum() // 10)]
                                       for c in np.unique(targets)])
            train_idx = np.setdiff1d(np.arange(len(full)), test_idx)
            train, test = torch.utils.data.Subset(full, train_idx), torch.utils.data.Subset(full, test_idx)
    except DataError:
        raise
    except Exception as exc:  # tonic tries to download when its files are incomplete
        raise DataError(f"{name}: tonic could not load '{folder}' ({type(exc).__name__}: {exc})") from None
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{name}: '{folder}' holds no recordings")
    sensor = cls.sensor_size  # (W, H, P)
    return Dataset(name, FrameSplit(train, workers), FrameSplit(test, workers), list(cls.classes),
                   (sensor[2], sensor[1], sensor[0]), frames=True)


def check_data_source(name: str, data_dir: str | Path | None = None, download: bool = False) -> None:
    """Options that a data set would ignore are refused, not dropped (cheap: reads nothing)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {list(DATASETS)}")
    if name == "digits" and data_dir is not None:
        raise DataError(f"digits ships inside scikit-learn and reads no directory; drop --data-dir '{data_dir}'")
    if download and name not in ("cifar10", "cifar100"):
        raise DataError(f"--download fetches CIFAR only; {name} cannot be downloaded")


def load_dataset(name: str, data_dir: str | Path | None = None, time_steps: int = 4,
                 download: bool = False, workers: int = 0) -> Dataset:
    """Load a data set by name; errors name the data set and the path that is wrong."""
    check_data_source(name, data_dir, download)
    if name == "digits":
        return load_digits()
    if name in ("cifar10", "cifar100"):
        return load_cifar(data_dir, 10 if name == "cifar10" else 100, download)
    if name in EVENT_DATASETS:
        return load_dvs(name, data_dir, time_steps, workers)
    raise DataError(f"unknown dataset {name!r}; known: {list(DATASETS)}")
