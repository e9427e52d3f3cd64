"""Small residual nets trained on scikit-learn digits (1x8x8) for the residual tests and benches.

- ``sew``: a SEW-like ResNet, 6 blocks whose add joins two ReLU outputs ("spike +
  spike"); nothing after the add, so the sums of levels flow into the next block.
  Its 3 stages x 2 blocks downsample through conv-bn-relu shortcuts, which re-spike
  the stream: a sum of levels runs through 2 joins (3 spike tensors) before it is reset.
- ``sew_deep``: the same SEW blocks, one stage of 8 at width 16 on 8x8: every shortcut
  is the identity, so sums of levels run through all 8 joins (the setting of the spike
  avalanche). Used by bench/ only.
- ``resnet``: a classic ResNet-20-style net (3 stages x 3 basic blocks, ReLU after the add).
- ``mobilenet``: a MobileNetV2-style net: inverted residual blocks with linear 1x1
  projections, so the residual adds have no activation after them (signed joins).

Training reuses ``examples/digits/train.py`` (data split, deterministic Adam loop,
ONNX export), so each model is seeded and identical from run to run.
``train_all(folder, names)`` trains and exports them (by default the first three, the
tests' nets); ``bench/`` calls it, the ``tests/test_residual*.py`` fixtures train on first use.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
DIGITS_DIR = ROOT / "examples" / "digits"
for _path in (DIGITS_DIR, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import train as digits_train  # noqa: E402
import zoo  # noqa: E402
from zoo import _conv_bn, resnet_stages  # noqa: E402

from snncc.sim.neuron_torch import quantize_levels, quantize_levels_ste  # noqa: E402

SEED = 0


class SEWBlock(zoo.SEWBlock):
    """out = relu(bn(conv(relu(bn(conv(x)))))) + shortcut(x); shortcut is x or conv-bn-relu.

    The zoo block's layers, without its ReLU on the block input: here x is itself a sum
    of levels (the previous join), as in SEW-ResNet's ADD.
    """

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class SEWNet(nn.Module):
    """Stem conv-bn-relu, 3 stages x 2 SEW blocks (8x8, 4x4, 2x2), GAP, dense."""

    def __init__(self, widths=(16, 24, 32), blocks_per_stage: int = 2):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, widths[0]), nn.ReLU())
        self.layers, cin = resnet_stages(SEWBlock, widths[0], widths, blocks_per_stage)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DeepSEWNet(SEWNet):
    """Stem conv-bn-relu, one stage of ``blocks`` SEW blocks (default 8) at ``width`` (8x8, identity
    shortcuts), GAP, dense."""

    def __init__(self, width: int = 16, blocks: int = 8):
        super().__init__(widths=(width,), blocks_per_stage=blocks)


class QAct(nn.Module):
    """Quantization-aware activation: the T=1 multi-level neuron's grid during training.

    Unsigned: ``s * clamp(floor(x/s + 1/2), 0, L)``, s = lam/L; signed: the same on
    -L..L (snncc/sim/neuron_torch.py, the torch twin of the neuron's T=1 quantizer). The
    rounding passes gradients straight through; lam is learnt (LSQ-style).
    With ``quantize`` off (float pre-training and export) an unsigned QAct is
    ``Clip(0, lam)`` and a signed one the identity, so the exported ONNX holds plain
    Clip/ReLU ops and snncc calibrates its own thresholds.
    """

    def __init__(self, levels: int = 4, signed: bool = False, init: float = 4.0):
        super().__init__()
        self.levels, self.signed = int(levels), bool(signed)
        self.lam = nn.Parameter(torch.tensor(float(init)))
        self.quantize = False

    def forward(self, x):
        # "mixed" (fine-tuning): each layer is quantized in a random half of the batches,
        # so the float ANN and its N-level version both stay accurate.
        quantize = self.quantize
        if quantize == "mixed":
            quantize = not self.training or bool(torch.rand(()) < 0.5)
        if not quantize:
            if self.signed:
                return x
            # training: PACT-style learnt clip; eval/export: a constant Clip(0, lam)
            return torch.minimum(F.relu(x), self.lam) if self.training else torch.clamp(x, 0.0, float(self.lam))
        s = self.lam.abs() / self.levels + 1e-8
        return quantize_levels_ste(x, s, self.levels, self.signed) * s


def init_qact_ranges(model: nn.Module, x: np.ndarray) -> None:
    """Set every QAct's lam to the clip value minimizing its N-level quantization error on ``x``.

    Quantization-aware fine-tuning then starts from a calibrated grid (as snncc's ``mse``
    thresholds would pick) instead of an arbitrary one.
    """
    acts = [m for m in model.modules() if isinstance(m, QAct)]
    seen: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(i, inp[0].detach()))
             for i, m in enumerate(acts)]
    with torch.no_grad():
        model.eval()(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    for i, m in enumerate(acts):
        v = seen[i].reshape(-1).double()
        ref = v if m.signed else v.clamp(min=0.0, max=float(m.lam.detach()))
        top = float(ref.abs().max()) or 1.0
        best = None
        for frac in np.linspace(0.05, 1.0, 60):
            s = frac * top / m.levels
            q = quantize_levels(v, s, m.levels, m.signed) * s
            err = float(((q - ref) ** 2).mean())
            if best is None or err < best[0]:
                best = (err, frac * top)
        with torch.no_grad():
            m.lam.fill_(best[1])


def set_quantize(model: nn.Module, on: bool) -> nn.Module:
    for m in model.modules():
        if isinstance(m, QAct):
            m.quantize = on
    return model


class BasicBlock(nn.Module):
    """Classic ResNet block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, 3, stride), QAct(), *_conv_bn(cout, cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(*_conv_bn(cin, cout, 1, stride)))
        self.act = QAct()

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20 depth: stem + 3 stages x 3 basic blocks (19 convs) + dense, narrow widths."""

    def __init__(self, widths=(16, 32, 64), blocks_per_stage: int = 3):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, widths[0]), QAct())
        self.layers, cin = resnet_stages(BasicBlock, widths[0], widths, blocks_per_stage)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    """1x1 expand + ReLU6, depthwise 3x3 + ReLU6, linear 1x1 projection; x + y when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, signed_input: bool):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        # a current (linear bottleneck or join) read by the 1x1 conv: a signed neuron in the SNN
        self.q_in = QAct(signed=True) if signed_input else nn.Identity()
        self.body = nn.Sequential(
            *_conv_bn(cin, hidden, 1), QAct(init=6.0),
            *_conv_bn(hidden, hidden, 3, stride, groups=hidden), QAct(init=6.0),
            *_conv_bn(hidden, cout, 1),
        )

    def forward(self, x):
        y = self.body(self.q_in(x))
        return x + y if self.use_res else y


class MobileNetV2Net(nn.Module):
    """Stem, five inverted residual blocks (three residual adds, two chained), head, GAP, dense."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, 24), QAct(init=6.0))
        self.blocks = nn.Sequential(
            InvertedResidual(24, 24, 1, 4, False),  # residual on the stem's spikes
            InvertedResidual(24, 32, 2, 4, True),  # downsampling, no residual
            InvertedResidual(32, 32, 1, 4, True),  # residual on a linear bottleneck
            InvertedResidual(32, 32, 1, 4, True),  # residual whose input is a linear join
            InvertedResidual(32, 48, 1, 4, True),  # widening, no residual
        )
        self.head = nn.Sequential(QAct(signed=True), *_conv_bn(48, 96, 1), QAct(init=6.0))
        self.fc = nn.Linear(96, 10)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


BUILDERS = {"sew": SEWNet, "resnet": ResNet20, "mobilenet": MobileNetV2Net, "sew_deep": DeepSEWNet}
EPOCHS = {"sew": 15, "resnet": 20, "mobilenet": 15, "sew_deep": 15}
QAT_EPOCHS = 8  # quantization-aware fine-tuning at N = QAct.levels (resnet, mobilenet)


@dataclass
class TrainedModel:
    name: str
    onnx_path: Path
    model: nn.Module
    ann_test_accuracy: float
    train_seconds: float


@dataclass
class ResidualModels:
    """The trained nets plus the digits split (calibrate on ``x_calib``, test on ``x_test``).

    ``models[name]`` trains ``name`` on first use (into ``folder``) and keeps it.
    """

    folder: Path
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    models: dict[str, TrainedModel] = field(default_factory=dict)

    @property
    def x_calib(self) -> np.ndarray:
        return self.x_train[:256]

    def __getitem__(self, name: str) -> TrainedModel:
        if name not in self.models:
            data = (self.x_train, self.y_train, self.x_test, self.y_test)
            self.models[name] = train_one(name, self.folder, data, self.seed)
        return self.models[name]


def build(name: str, seed: int = SEED, **shape) -> nn.Module:
    """A fresh, seeded net; ``shape`` goes to its builder (e.g. ``blocks=4`` for sew_deep)."""
    torch.manual_seed(seed)
    return BUILDERS[name](**shape)


def train_one(name: str, folder: Path, data, seed: int = SEED, **shape) -> TrainedModel:
    x_tr, y_tr, x_te, y_te = data
    t0 = time.perf_counter()
    model = digits_train.train(build(name, seed, **shape), x_tr, y_tr, epochs=EPOCHS[name], seed=seed)
    if any(isinstance(m, QAct) for m in model.modules()):  # then fine-tune on the N-level grid
        init_qact_ranges(model, x_tr[:256])
        set_quantize(model, True)
        digits_train.train(model, x_tr, y_tr, epochs=QAT_EPOCHS, seed=seed + 1, lr=1e-3)
        set_quantize(model, False)
    seconds = time.perf_counter() - t0
    tag = "".join(f"_{k}{v}" for k, v in sorted(shape.items()))
    path = digits_train.export_onnx(model, Path(folder) / f"residual_{name}{tag}.onnx")
    return TrainedModel(name, path, model, digits_train.accuracy(model, x_te, y_te), seconds)


def lazy_models(folder: Path, seed: int = SEED) -> ResidualModels:
    """The digits split (always the example's), with each net trained from ``seed`` when first asked for."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return ResidualModels(Path(folder), seed, *digits_train.load_digits_split())


def train_all(folder: Path, names=("sew", "resnet", "mobilenet"), seed: int = SEED) -> ResidualModels:
    res = lazy_models(folder, seed)
    for n in names:
        res[n]
    return res


if __name__ == "__main__":  # quick look: python tests/residual_models.py /tmp/out
    import tempfile

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    res = train_all(out)
    for m in res.models.values():
        print(f"{m.name:10s} ANN test accuracy {m.ann_test_accuracy:.4f}  "
              f"trained in {m.train_seconds:.1f} s  {m.onnx_path}")
