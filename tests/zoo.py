"""The test-model zoo: small seeded torch CNNs covering the ops snncc must handle.

Every builder returns a model in eval mode whose weights and BatchNorm statistics are
drawn from a fixed seed, so two calls give identical models. ``ZOO`` maps a model name
to ``(builder, per-sample input shape)``; ``export`` writes one to ONNX with either
torch exporter.

The weights are untrained: these models test graph structure and numerics, not
accuracy (the digits fixture in ``conftest.py`` is the trained model).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

EXPORTERS = ("torchscript", "dynamo")


def _seeded_init(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw every parameter from ``seed`` and give BatchNorm non-trivial statistics.

    BN layers get random gamma, beta, running mean and running variance, so that a
    frontend or canonicalize pass that mishandles BN folding changes the output.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                bound = (6.0 / fan_in) ** 0.5  # He-uniform: activations keep their scale
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 2 * bound - bound)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
    return model.eval()


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


def resnet_stages(block, cin: int, widths, blocks_per_stage: int) -> tuple[nn.Sequential, int]:
    """Stages of ``block(cin, cout, stride)``: stride 2 at the first block of every stage
    but the first. Returns the stages and their output channels."""
    layers = []
    for i, w in enumerate(widths):
        for j in range(blocks_per_stage):
            layers.append(block(cin, w, 2 if (i > 0 and j == 0) else 1))
            cin = w
    return nn.Sequential(*layers), cin


# --- plain CNNs --------------------------------------------------------------------


class LeNet(nn.Module):
    """LeNet-5 on 1x28x28: conv-relu-maxpool twice, then three dense layers.

    ``x.view(x.size(0), -1)`` makes the TorchScript exporter emit the
    Shape/Gather/Unsqueeze/Concat/Reshape chain of a dynamic batch.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class VGGSmall(nn.Module):
    """VGG-style on 3x16x16: two conv-BN-ReLU stacks with max pooling, dropout, dense head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(3, 16), nn.ReLU(), *_conv_bn(16, 16), nn.ReLU(), nn.MaxPool2d(2),
            *_conv_bn(16, 32), nn.ReLU(), *_conv_bn(32, 32), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.reshape(x.shape[0], -1))


# --- residual networks -------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block, ReLU after the add; 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, 3, stride), nn.ReLU(), *_conv_bn(cout, cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(*_conv_bn(cin, cout, 1, stride))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet: stem, three stages (stride 1, 2, 2), GAP, dense."""

    def __init__(self, blocks_per_stage: int = 3, widths=(16, 32, 64), num_classes: int = 10, in_ch: int = 3):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_ch, widths[0]), nn.ReLU())
        self.layers, cin = resnet_stages(BasicBlock, widths[0], widths, blocks_per_stage)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class SEWBlock(nn.Module):
    """SEW-ResNet style block: both inputs of the add are ReLU outputs ("spikes")."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, 3, stride), nn.ReLU(), *_conv_bn(cout, cout), nn.ReLU())
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(*_conv_bn(cin, cout, 1, stride), nn.ReLU()))

    def forward(self, x):
        x = F.relu(x)
        return self.body(x) + self.shortcut(x)


class SEWResNet(nn.Module):
    """SEW-ResNet on 3x16x16: three stages of two SEW blocks (6 blocks, 4 identity shortcuts)."""

    def __init__(self, widths=(8, 16, 32), blocks_per_stage: int = 2, in_ch: int = 3):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_ch, widths[0]), nn.ReLU())
        self.layers, cin = resnet_stages(SEWBlock, widths[0], widths, blocks_per_stage)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1))


class PreActBlock(nn.Module):
    """Pre-activation block: the residual stream carries un-activated (signed) values."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(a)
        return self.conv2(F.relu(self.bn2(self.conv1(a)))) + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet on 3x16x16: three stages of two blocks, final BN-ReLU, GAP, dense."""

    def __init__(self, widths=(8, 16, 32), blocks_per_stage: int = 2, in_ch: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False)
        self.layers, cin = resnet_stages(PreActBlock, widths[0], widths, blocks_per_stage)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.layers(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU6, depthwise 3x3 + ReLU6, linear 1x1 project.

    With a residual, the add has no activation after it (a signed join).
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            *_conv_bn(cin, hidden, 1), nn.ReLU6(),
            *_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(),
            *_conv_bn(hidden, cout, 1),
        )

    def forward(self, x):
        y = self.body(x)
        return x + y if self.use_res else y


class MobileNetV2Blocks(nn.Module):
    """Stem + three inverted residual blocks (two with residuals) on 3x16x16, GAP, dense."""

    def __init__(self, in_ch: int = 3):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_ch, 16, 3, 2), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 4),  # residual, same shape
            InvertedResidual(16, 24, 2, 4),  # downsampling, no residual
            InvertedResidual(24, 24, 1, 4),  # residual
        )
        self.head = nn.Sequential(*_conv_bn(24, 48, 1), nn.ReLU6())
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- topology and pooling variants -------------------------------------------------


class ConcatNet(nn.Module):
    """Inception-like: 1x1, 3x3 and max-pool branches concatenated on channels."""

    def __init__(self, in_ch: int = 3):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_ch, 16), nn.ReLU())
        self.b1 = nn.Sequential(*_conv_bn(16, 8, 1), nn.ReLU())
        self.b3 = nn.Sequential(*_conv_bn(16, 12, 3), nn.ReLU())
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv_bn(16, 4, 1), nn.ReLU())
        self.mix = nn.Sequential(*_conv_bn(24, 24), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.mix(torch.cat([self.b1(x), self.b3(x), self.bp(x)], dim=1))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class PoolNet(nn.Module):
    """Pooling variants: padded max pool, AvgPool with and without counted padding, GAP."""

    def __init__(self, in_ch: int = 3):
        super().__init__()
        self.conv1 = nn.Sequential(*_conv_bn(in_ch, 16), nn.ReLU())
        self.pool1 = nn.MaxPool2d(3, 2, 1)  # padded max pool: pads act as -inf
        self.conv2 = nn.Sequential(*_conv_bn(16, 16), nn.ReLU())
        self.pool2 = nn.AvgPool2d(2)
        self.conv3 = nn.Sequential(*_conv_bn(16, 24), nn.ReLU())
        self.pool3 = nn.AvgPool2d(3, 1, 1, count_include_pad=True)
        self.conv4 = nn.Sequential(*_conv_bn(24, 24), nn.ReLU())
        self.pool4 = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        x = self.pool4(self.conv4(self.pool3(self.conv3(x))))
        return self.fc(torch.flatten(self.gap(x), 1))


def _channel_shuffle(x, groups: int):
    """torchvision's ShuffleNetV2 channel shuffle: Reshape-Transpose-Reshape."""
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, -1, h, w)


class OpsNet(nn.Module):
    """The remaining IR ops: explicit zero Pad, dilated conv, grouped conv, channel
    shuffle, a bias-free Linear and a trailing Softmax."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 16), nn.ReLU())
        self.pad = nn.ZeroPad2d((1, 2, 1, 2))  # asymmetric, becomes an ONNX Pad
        self.conv_valid = nn.Conv2d(16, 16, 3, 1, 0)
        self.dilated = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 2, dilation=2, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1, groups=4, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.fc = nn.Linear(32, 10, bias=False)

    def forward(self, x):
        x = F.relu(self.conv_valid(self.pad(self.stem(x))))
        x = _channel_shuffle(self.grouped(self.dilated(x)), 4)
        return torch.softmax(self.fc(x.mean(dim=(2, 3))), dim=1)


# --- registry ----------------------------------------------------------------------


def lenet(seed: int = 0) -> nn.Module:
    return _seeded_init(LeNet(), seed)


def vgg_small(seed: int = 0) -> nn.Module:
    return _seeded_init(VGGSmall(), seed)


def resnet20(seed: int = 0, in_ch: int = 3) -> nn.Module:
    """ResNet-20 depth (3 stages x 3 basic blocks) at CIFAR widths 16/32/64."""
    return _seeded_init(CifarResNet(3, (16, 32, 64), in_ch=in_ch), seed)


def resnet8(seed: int = 0, in_ch: int = 3) -> nn.Module:
    """Shallow, narrow CIFAR ResNet (3 stages x 1 block, widths 8/16/32): fast residual tests."""
    return _seeded_init(CifarResNet(1, (8, 16, 32), in_ch=in_ch), seed)


def mobilenetv2_block(seed: int = 0, in_ch: int = 3) -> nn.Module:
    return _seeded_init(MobileNetV2Blocks(in_ch), seed)


def concat_net(seed: int = 0, in_ch: int = 3) -> nn.Module:
    return _seeded_init(ConcatNet(in_ch), seed)


def pool_net(seed: int = 0, in_ch: int = 3) -> nn.Module:
    return _seeded_init(PoolNet(in_ch), seed)


def ops_net(seed: int = 0) -> nn.Module:
    return _seeded_init(OpsNet(), seed)


def sew_resnet(seed: int = 0, in_ch: int = 3) -> nn.Module:
    return _seeded_init(SEWResNet(in_ch=in_ch), seed)


def preact_resnet(seed: int = 0, in_ch: int = 3) -> nn.Module:
    return _seeded_init(PreActResNet(in_ch=in_ch), seed)


ZOO: dict[str, tuple[Callable[..., nn.Module], tuple[int, ...]]] = {
    "lenet": (lenet, (1, 28, 28)),
    "vgg_small": (vgg_small, (3, 16, 16)),
    "resnet8": (resnet8, (3, 32, 32)),
    "resnet20": (resnet20, (3, 32, 32)),
    "mobilenetv2_block": (mobilenetv2_block, (3, 16, 16)),
    "concat_net": (concat_net, (3, 16, 16)),
    "pool_net": (pool_net, (3, 16, 16)),
    "ops_net": (ops_net, (3, 16, 16)),
    "sew_resnet": (sew_resnet, (3, 16, 16)),
    "preact_resnet": (preact_resnet, (3, 16, 16)),
}


# Models whose head is global pooling, so they also take the 1x8x8 digits images.
DIGITS_CAPABLE = ("resnet8", "resnet20", "mobilenetv2_block", "concat_net", "pool_net", "sew_resnet",
                  "preact_resnet")


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """The zoo model ``name`` (eval mode, seeded) and its per-sample input shape."""
    fn, shape = ZOO[name]
    return fn(seed), shape


def build_for_digits(name: str, seed: int = 0) -> nn.Module:
    """The zoo architecture ``name`` with a 1-channel stem, for 1x8x8 digits images."""
    if name not in DIGITS_CAPABLE:
        raise KeyError(f"{name!r} does not take 1x8x8 inputs; use one of {DIGITS_CAPABLE}")
    return ZOO[name][0](seed, in_ch=1)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sample_input(shape, n: int = 4, seed: int = 0) -> np.ndarray:
    """Seeded float32 batch (n, *shape): half-normal, like post-normalisation images."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32)


@contextlib.contextmanager
def _quiet():
    """Silence the exporters: warnings, prints and the dynamo exporter's logging."""
    sink = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch", "torch.onnx", "torch.export", "torch.__trace", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def export(model: nn.Module, input_shape, path, dynamo: bool = False, keep_bn: bool = True) -> Path:
    """Export ``model`` to ONNX at ``path`` with a dynamic batch dimension.

    ``dynamo=False``: TorchScript exporter, opset 13, ``dynamic_axes`` on the batch (so
    Shape/Gather chains appear). ``keep_bn`` keeps BatchNormalization nodes instead of
    letting the exporter fuse them into the convs (``TrainingMode.PRESERVE`` on an
    eval-mode model). ``dynamo=True``: the torch.export-based exporter (its default
    opset), with a symbolic batch dimension; its optimizer fuses Conv+BN pairs, so only
    BN nodes not preceded by a conv (pre-activation) survive.
    """
    path = Path(path)
    model = model.eval()
    dummy = torch.from_numpy(sample_input(input_shape, n=2, seed=0))
    with _quiet():
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            torch.onnx.export(model, (dummy,), str(path), dynamo=True, input_names=["input"],
                              output_names=["output"], dynamic_shapes=({0: batch},), verbose=False,
                              external_data=False)
        else:
            mode = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=13, training=mode,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path
