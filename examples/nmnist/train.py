"""Train the N-MNIST example: a small CNN on ON/OFF event-count frames.

Run ``python examples/nmnist/train.py`` to regenerate, next to this file,
``nmnist_cnn.onnx``, ``nmnist_calib.npz`` (300 training frames) and
``provenance.json``; ``--write-test test.npz`` also writes the 100 test frames.

The data is the N-MNIST subset in ``../shared/data/nmnist-small`` (1,000 training and
100 test recordings, Orchard et al. 2015, CC BY-SA 4.0), read with tonic
(``tonic.io.read_mnist_file``; ``pip install -c .ci/constraints.txt -e ".[bench]"``).
Each recording (about 300 ms, about 4,000 events on a 34x34 sensor) becomes one frame
of event counts per polarity, shape (2, 34, 34), with ``tonic.transforms.ToFrame`` and
one time bin: the whole recording is one timestep, which is what snncc's T=1 runs.
The counts are integers (at most 24 in this subset), so the network is compiled with
``input_scale = 1`` (snncc.toml): the int8 input is the count itself, exactly.
"""

from __future__ import annotations

import argparse
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
DATA_DIR = HERE.parents[2] / "shared" / "data" / "nmnist-small"
SENSOR = (34, 34, 2)
SEED = 0
EPOCHS = 40
CALIB_SAMPLES = 300

_spec = importlib.util.spec_from_file_location("digits_train", HERE.parent / "digits" / "train.py")
digits_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits_train)


def load_nmnist(split: str, data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(frames, labels) of ``"train"`` (1,000) or ``"test"`` (100): float32 event counts
    shaped (N, 2, 34, 34), channel 0 = OFF, 1 = ON; labels int64."""
    listing = data_dir / {"train": "train1K.txt", "test": "test100.txt"}[split]
    if not listing.is_file():
        raise FileNotFoundError(f"the N-MNIST subset is not at {data_dir}: it ships in the project's shared data "
                                "folder (../shared/data/nmnist-small, see its README)")
    try:
        import tonic
    except ImportError:
        raise FileNotFoundError("tonic is not installed: pip install -c .ci/constraints.txt -e \".[bench]\"") \
            from None
    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR, n_time_bins=1)
    frames, labels = [], []
    for line in listing.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        sample_id, label = line.split()
        events = tonic.io.read_mnist_file(str(data_dir / f"{sample_id}.bs2"), dtype=dtype)
        frames.append(to_frame(events)[0])
        labels.append(int(label))
    return np.stack(frames).astype(np.float32), np.array(labels, dtype=np.int64)


def build_cnn(seed: int = SEED) -> nn.Module:
    """Three conv-BN-ReLU blocks with max pools, GAP, dense; reads raw counts (BN scales them)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 10),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--write-test", type=Path, metavar="NPZ", help="also write the 100 test frames (x, y) here")
    args = ap.parse_args(argv)
    try:
        x_tr, y_tr = load_nmnist("train")
        x_te, y_te = load_nmnist("test")
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    model = digits_train.train(build_cnn(args.seed), x_tr, y_tr, EPOCHS, args.seed, batch_size=50, lr=3e-3)
    elapsed = time.perf_counter() - t0
    acc = digits_train.accuracy(model, x_te, y_te)
    args.out.mkdir(parents=True, exist_ok=True)
    digits_train.export_onnx(model, args.out / "nmnist_cnn.onnx", input_shape=(2, 34, 34))
    torch.save(model.state_dict(), args.out / "nmnist_cnn.pt")
    with open(args.out / "nmnist_calib.npz", "wb") as f:
        np.savez_compressed(f, x=x_tr[:CALIB_SAMPLES], y=y_tr[:CALIB_SAMPLES])
    split = hashlib.sha256(x_te.tobytes() + y_te.tobytes()).hexdigest()
    record = {"train_py_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
              "test_split_sha256": split, "seed": args.seed, "epochs": EPOCHS,
              "ann_test_accuracy": round(acc, 6), "max_count": int(max(x_tr.max(), x_te.max()))}
    (args.out / "provenance.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if args.write_test:
        with open(args.write_test, "wb") as f:
            np.savez(f, x=x_te, y=y_te)
    print(f"trained in {elapsed:.1f} s; ANN test accuracy {acc:.4f} on {len(y_te)} test recordings; "
          f"largest count {record['max_count']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
