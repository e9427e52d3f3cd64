"""Train the digits CNN used by the example and the test fixtures.

Run ``python examples/digits/train.py`` to regenerate ``digits_cnn.onnx``,
``digits_calib.npz`` and ``provenance.json`` next to this file. The script is
deterministic on one machine: running it twice gives byte-identical files. Another
CPU type may train slightly different weights (torch kernels differ by ISA), which
is why ``provenance.json`` records this script's hash, the split and the accuracy.
It is also importable (``tests/conftest.py`` uses its functions to train once per
test session).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
EPOCHS = 30
SEED = 0


def load_digits_split(seed: int = SEED):
    """scikit-learn digits as (x_train, y_train, x_test, y_test).

    Images are float32 in [0, 1], shaped (N, 1, 8, 8); labels int64. The test split
    is a seeded, stratified 30 % hold-out.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    return (np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_te), y_te)


def build_cnn(seed: int = SEED) -> nn.Module:
    """A small CNN for 1x8x8 digits: three conv-BN-ReLU blocks, max pool, GAP, dense."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 10),
    )


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = EPOCHS, seed: int = SEED,
          batch_size: int = 64, lr: float = 3e-3) -> nn.Module:
    """Train in place with Adam and a cosine schedule; deterministic on CPU. Returns the model in eval mode."""
    torch.manual_seed(seed)
    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # one thread: reductions always sum in the same order
    try:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), batch_size):
                idx = perm[i:i + batch_size]
                opt.zero_grad()
                loss_fn(model(xt[idx]), yt[idx]).backward()
                opt.step()
            sched.step()
    finally:  # leave global torch settings as we found them (matters inside pytest)
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` (eval mode) as a fraction in [0, 1]."""
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def export_onnx(model: nn.Module, path, dynamo: bool = False, input_shape=(1, 8, 8)) -> Path:
    """Export ``model`` to ONNX with a dynamic batch dimension; output is quiet."""
    path = Path(path)
    model = model.eval()
    dummy = torch.zeros((1, *input_shape), dtype=torch.float32)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            torch.onnx.export(model, (dummy,), str(path), dynamo=True, input_names=["input"],
                              output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False,
                              external_data=False)
        else:
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=13,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def provenance(x_te: np.ndarray, y_te: np.ndarray, ann_test_accuracy: float, seed: int, epochs: int) -> dict:
    """What the committed ONNX was made from: this script's hash, the test split's hash and the
    accuracy it reached.  Torch training is not bit-identical across CPU types, so a check that
    the example is current compares these, not the weights a fresh run would give."""
    split = hashlib.sha256(np.ascontiguousarray(x_te).tobytes() + np.ascontiguousarray(y_te).tobytes())
    return {"train_py_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
            "test_split_sha256": split.hexdigest(), "seed": seed, "epochs": epochs,
            "ann_test_accuracy": round(ann_test_accuracy, 6)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_digits_split(args.seed)
    model = train(build_cnn(args.seed), x_tr, y_tr, args.epochs, args.seed)
    elapsed = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, args.out / "digits_cnn.onnx")
    # The held-out test split doubles as calibration set (see README).
    with open(args.out / "digits_calib.npz", "wb") as f:
        np.savez(f, x=x_te, y=y_te)
    acc = accuracy(model, x_te, y_te)
    record = provenance(x_te, y_te, acc, args.seed, args.epochs)
    (args.out / "provenance.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"trained in {elapsed:.1f} s; ANN test accuracy {acc:.4f} ({len(y_te)} held-out images)")
    print(f"wrote {args.out / 'digits_cnn.onnx'}, {args.out / 'digits_calib.npz'} and {args.out / 'provenance.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
