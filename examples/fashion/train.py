"""Train the Fashion-MNIST example models: a small CNN and a small ResNet.

Run ``python examples/fashion/train.py`` to regenerate, next to this file,
``fashion_cnn.onnx``, ``fashion_resnet.onnx``, their torch weights (``*.pt``, for
``bench/peers.py``, which converts the same models with SpikingJelly),
``fashion_calib.npz`` (300 training images, under 1 MB) and ``provenance.json``.  ``--write-test test.npz`` also writes
the 10,000 official test images for ``snncc verify --data``.

The data comes from the Debian package ``dataset-fashion-mnist`` (the official IDX
files, installed by ``.ci/setup``): ``apt-get install -y dataset-fashion-mnist``.

Training is seeded and single-threaded, so it is deterministic on one machine.
Another CPU type may train slightly different weights (torch kernels differ by ISA);
the committed ONNX files are what the tests and the README use, and
``provenance.json`` records this script's hash and the accuracy each model reached.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL = "apt-get install -y dataset-fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
SEED = 0
EPOCHS = {"cnn": 6, "resnet": 3}
CALIB_SAMPLES = 300

# The digits example's training loop, accuracy and exporter are reused as they are.
_spec = importlib.util.spec_from_file_location("digits_train", HERE.parent / "digits" / "train.py")
digits_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits_train)


def _idx(path: Path) -> np.ndarray:
    """One IDX file (gzip): magic (0, 0, dtype 0x08 = uint8, ndim), big-endian dims, data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not a uint8 IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data for dims {dims}")
    return data.reshape(dims)


def load_fashion(split: str, data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of the ``"train"`` (60,000) or ``"test"`` (10,000) split.

    Images are float32 in [0, 1], shaped (N, 1, 28, 28); labels int64.  Raises
    FileNotFoundError naming the install command when the data is not installed.
    """
    prefix = {"train": "train", "test": "t10k"}[split]
    images, labels = data_dir / f"{prefix}-images-idx3-ubyte.gz", data_dir / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images, labels):
        if not path.is_file():
            raise FileNotFoundError(f"Fashion-MNIST is not installed ({path} is missing): run `{INSTALL}` "
                                    "(or `bash .ci/setup`)")
    x = (_idx(images).astype(np.float32) / 255.0)[:, None, :, :]
    return np.ascontiguousarray(x), _idx(labels).astype(np.int64)


def build_cnn(seed: int = SEED) -> nn.Module:
    """Three conv-BN-ReLU blocks with max pools, global average pool, dense (about 24k parameters)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 10),
    )


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the shortcut (1x1 conv-BN when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def build_resnet(seed: int = SEED) -> nn.Module:
    """A ResNet-8-style net: stem, three basic blocks (16, 32/2, 64/2), GAP, dense (about 78k parameters)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


MODELS = {"cnn": build_cnn, "resnet": build_resnet}


def calibration_subset(x: np.ndarray, y: np.ndarray, n: int = CALIB_SAMPLES, seed: int = SEED):
    """``n`` training images, class-balanced, in a seeded order: the committed calibration set."""
    rng = np.random.default_rng(seed)
    per_class = n // 10
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)])
    idx = rng.permutation(idx)
    return x[idx], y[idx]


def provenance(models: dict[str, dict], x_te: np.ndarray, y_te: np.ndarray, seed: int) -> dict:
    """This script's hash, the test split's hash, and each model's epochs and test accuracy."""
    split = hashlib.sha256(np.ascontiguousarray(x_te).tobytes() + np.ascontiguousarray(y_te).tobytes())
    return {"train_py_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
            "test_split_sha256": split.hexdigest(), "seed": seed, "models": models}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument("--write-test", type=Path, metavar="NPZ",
                    help="also write the 10,000 test images and labels (x, y) to this .npz")
    ap.add_argument("--data-only", action="store_true", help="only write --write-test; train nothing")
    args = ap.parse_args(argv)
    if args.data_only:
        args.models = []

    try:
        x_tr, y_tr = load_fashion("train")
        x_te, y_te = load_fashion("test")
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    record = {}
    for name in args.models:
        t0 = time.perf_counter()
        model = digits_train.train(MODELS[name](args.seed), x_tr, y_tr, EPOCHS[name], args.seed,
                                   batch_size=128, lr=3e-3)
        elapsed = time.perf_counter() - t0
        acc = digits_train.accuracy(model, x_te, y_te)
        path = digits_train.export_onnx(model, args.out / f"fashion_{name}.onnx", input_shape=(1, 28, 28))
        torch.save(model.state_dict(), args.out / f"fashion_{name}.pt")
        record[name] = {"epochs": EPOCHS[name], "ann_test_accuracy": round(acc, 6),
                        "params": int(sum(p.numel() for p in model.parameters()))}
        print(f"{name}: trained in {elapsed:.1f} s; ANN test accuracy {acc:.4f} on 10,000 images; wrote {path}",
              flush=True)
    if args.models:
        write_outputs(args.out, record, x_tr, y_tr, x_te, y_te, args.seed)
    if args.write_test:
        with open(args.write_test, "wb") as f:
            np.savez(f, x=x_te, y=y_te)
        print(f"wrote {args.write_test} ({len(y_te)} test images)")
    return 0


def write_outputs(out: Path, record: dict, x_tr, y_tr, x_te, y_te, seed: int) -> None:
    """The calibration subset and provenance.json (merged with models an earlier run trained)."""
    xc, yc = calibration_subset(x_tr, y_tr, seed=seed)
    with open(out / "fashion_calib.npz", "wb") as f:
        np.savez_compressed(f, x=xc, y=yc)
    # models trained by an earlier run (``--models cnn``, then ``--models resnet``) keep their entries
    prov_path = out / "provenance.json"
    if prov_path.is_file():
        record = {**json.loads(prov_path.read_text()).get("models", {}), **record}
    prov_path.write_text(json.dumps(provenance(record, x_te, y_te, seed), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
