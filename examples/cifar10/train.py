"""Train the CIFAR-10 example models: a ResNet-20-style net and a VGG-style net.

Run ``python examples/cifar10/train.py`` to regenerate, next to this file,
``cifar10_resnet20.onnx``, ``cifar10_vgg.onnx``, their torch weights (``*.pt``, for
``bench/peers.py``), ``cifar10_calib.npz`` (a class-balanced calibration subset of
training images) and ``provenance.json``.  ``--write-test test.npz`` also writes the
10,000 test images for ``snncc verify --data``.

The data is ``../shared/data/cifar10-jpeg`` (``train.zip``, ``test.zip``): CIFAR-10
re-encoded as **lossy JPEG** (quality 75, 4:2:0 chroma, about 30.5 dB PSNR against
the originals).  Accuracy on it is close to published CIFAR-10 figures but not equal;
every figure this example reports is on the JPEG test set.  ``--data DIR`` points
elsewhere.  Decoding needs Pillow.

Training is a short CPU schedule (SGD with Nesterov momentum, one-cycle cosine
learning rate, random crop and horizontal flip), seeded and single-threaded, so it
is deterministic on one machine.  Another CPU type may train slightly different
weights (torch kernels differ by ISA); the committed ONNX files are what the
benchmarks use, and ``provenance.json`` records this script's hash and the accuracy
each model reached.  The images enter the models as RGB in [0, 1], unnormalised:
the first BatchNorm absorbs the per-channel mean and scale, so the int8 input of
the spiking network is simply ``round(127 * pixel / 255)``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE.parents[2] / "shared" / "data" / "cifar10-jpeg"
GET_DATA = ("the CIFAR-10 JPEG set lives in ../shared/data/cifar10-jpeg (train.zip, test.zip); "
            "see ../shared/data/README.md, or pass --data DIR")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SEED = 0
EPOCHS = {"resnet20": 8, "vgg": 8}
CALIB_SAMPLES = 200
BATCH = 128


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The digits example's accuracy and exporter, and the Fashion-MNIST example's basic
# block and calibration subset, are reused as they are.
digits_train = _load_module("digits_train", HERE.parent / "digits" / "train.py")
fashion_train = _load_module("fashion_train", HERE.parent / "fashion" / "train.py")


def load_cifar10(split: str, data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of the ``"train"`` (50,000) or ``"test"`` (10,000) split.

    Images are float32 RGB in [0, 1], shaped (N, 3, 32, 32), in the zip's sorted
    order (class, then rank); labels int64.  Raises FileNotFoundError saying where
    the data comes from when it is absent.
    """
    from PIL import Image

    path = Path(data_dir) / f"{split}.zip"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {GET_DATA}")
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        x = np.empty((len(names), 32, 32, 3), np.uint8)
        y = np.empty(len(names), np.int64)
        for i, name in enumerate(names):
            y[i] = CLASSES.index(name.split("/")[-2])
            x[i] = np.asarray(Image.open(io.BytesIO(z.read(name))).convert("RGB"))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0), y


def build_resnet20(seed: int = SEED, width: int = 16) -> nn.Module:
    """ResNet-20 (He et al. 2016, CIFAR variant): stem, 3 stages x 3 basic blocks
    (16, 32/2, 64/2 channels), global average pool, dense; 1x1 projection shortcuts."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for stage, mult in enumerate((1, 2, 4)):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(fashion_train.BasicBlock(cin, width * mult, stride))
            cin = width * mult
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def build_vgg(seed: int = SEED, width: int = 32) -> nn.Module:
    """A VGG-style net: three stages of two conv-BN-ReLU layers (32, 64, 128) with max
    pools, global average pool, dense."""
    torch.manual_seed(seed)
    layers, cin = [], 3
    for mult in (1, 2, 4):
        for _ in range(2):
            layers += [nn.Conv2d(cin, width * mult, 3, padding=1, bias=False), nn.BatchNorm2d(width * mult),
                       nn.ReLU()]
            cin = width * mult
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


MODELS = {"resnet20": build_resnet20, "vgg": build_vgg}


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random 32x32 crop of the 4-pixel zero-padded image, and a random horizontal flip."""
    n = len(x)
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    dy, dx = rng.integers(0, 9, n), rng.integers(0, 9, n)
    rows = dy[:, None] + np.arange(32)[None, :]
    cols = dx[:, None] + np.arange(32)[None, :]
    out = padded[np.arange(n)[:, None, None, None], np.arange(3)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    flip = rng.random(n) < 0.5
    out[flip] = out[flip][..., ::-1]
    return np.ascontiguousarray(out)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = SEED,
          x_val: np.ndarray | None = None, y_val: np.ndarray | None = None, log=print) -> nn.Module:
    """SGD (Nesterov, momentum 0.9, weight decay 5e-4) with a one-cycle cosine rate
    peaking at 0.1; one thread, deterministic algorithms.  Returns the model in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        steps = epochs * ((len(x) + BATCH - 1) // BATCH)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps, pct_start=0.15)
        loss_fn = nn.CrossEntropyLoss()
        yt = torch.from_numpy(y)
        for epoch in range(epochs):
            model.train()
            t0, perm, total = time.perf_counter(), rng.permutation(len(x)), 0.0
            for i in range(0, len(x), BATCH):
                idx = perm[i:i + BATCH]
                opt.zero_grad()
                loss = loss_fn(model(torch.from_numpy(_augment(x[idx], rng))), yt[idx])
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            line = f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}, {time.perf_counter() - t0:.0f} s"
            if x_val is not None:
                line += f", test accuracy {digits_train.accuracy(model, x_val, y_val):.4f}"
            log(line, flush=True)
    finally:  # leave global torch settings as we found them
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
    return model.eval()


def provenance(models: dict[str, dict], x_te: np.ndarray, y_te: np.ndarray, seed: int) -> dict:
    """This script's hash, the test split's hash, and each model's epochs and test accuracy."""
    split = hashlib.sha256(np.ascontiguousarray(x_te).tobytes() + np.ascontiguousarray(y_te).tobytes())
    return {"train_py_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
            "test_split_sha256": split.hexdigest(), "seed": seed, "data": "cifar10-jpeg (lossy JPEG, q75 4:2:0)",
            "models": models}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    ap.add_argument("--data", type=Path, default=DATA_DIR, help="folder holding train.zip and test.zip")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument("--epochs", type=int, help="override the per-model epoch count")
    ap.add_argument("--write-test", type=Path, metavar="NPZ",
                    help="also write the 10,000 test images and labels (x, y) to this .npz")
    ap.add_argument("--data-only", action="store_true", help="only write --write-test; train nothing")
    args = ap.parse_args(argv)
    if args.data_only:
        args.models = []
    try:
        x_te, y_te = load_cifar10("test", args.data)
        x_tr, y_tr = load_cifar10("train", args.data) if args.models else (None, None)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    record = {}
    for name in args.models:
        epochs = args.epochs or EPOCHS[name]
        t0 = time.perf_counter()
        model = train(MODELS[name](args.seed), x_tr, y_tr, epochs, args.seed, x_te, y_te,
                      log=lambda *a, _name=name, **k: print(f"{_name}:", *a, **k))
        elapsed = time.perf_counter() - t0
        acc = digits_train.accuracy(model, x_te, y_te)
        path = digits_train.export_onnx(model, args.out / f"cifar10_{name}.onnx", input_shape=(3, 32, 32))
        torch.save(model.state_dict(), args.out / f"cifar10_{name}.pt")
        record[name] = {"epochs": epochs, "ann_test_accuracy": round(acc, 6), "train_seconds": round(elapsed),
                        "params": int(sum(p.numel() for p in model.parameters()))}
        print(f"{name}: trained in {elapsed:.0f} s; ANN test accuracy {acc:.4f} on 10,000 JPEG test images; "
              f"wrote {path}", flush=True)
    if args.models:
        write_outputs(args.out, record, x_tr, y_tr, x_te, y_te, args.seed)
    if args.write_test:
        with open(args.write_test, "wb") as f:
            np.savez(f, x=x_te, y=y_te)
        print(f"wrote {args.write_test} ({len(y_te)} test images)")
    return 0


def write_outputs(out: Path, record: dict, x_tr, y_tr, x_te, y_te, seed: int) -> None:
    """The calibration subset and provenance.json (merged with models an earlier run trained)."""
    xc, yc = fashion_train.calibration_subset(x_tr, y_tr, n=CALIB_SAMPLES, seed=seed)
    with open(out / "cifar10_calib.npz", "wb") as f:
        np.savez_compressed(f, x=xc, y=yc)
    prov_path = out / "provenance.json"
    if prov_path.is_file():
        record = {**json.loads(prov_path.read_text()).get("models", {}), **record}
    prov_path.write_text(json.dumps(provenance(record, x_te, y_te, seed), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
