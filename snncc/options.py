"""Compile options shared by the CLI, the Python API and every pass."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

from snncc.errors import SnnccError

THRESHOLD_METHODS = ("max", "percentile", "mse")
WEIGHT_QUANTIZERS = ("max", "percentile", "mse", "rescaw")
RESIDUAL_MODES = ("sparse", "sew")
THRESHOLD_SEARCHES = ("none", "output")


@dataclass
class CompileOptions:
    levels: int = 4  # N: spike levels per neuron (1 = binary spikes)
    timesteps: int = 1  # T
    threshold: str = "mse"  # max | percentile[:P] | mse
    threshold_granularity: str = "channel"  # channel | layer
    weight_bits: int = 8
    layer_bits: dict[str, int] = field(default_factory=dict)  # per-layer overrides
    weight_quantizer: str = "mse"  # max | percentile | mse | rescaw
    membrane_bits: int = 16
    membrane_shift: int = 0  # SpQuant stored-precision: residual on a 2^k grid
    residual: str = "sparse"  # sparse | sew
    barrier_scale: float = 1.0  # barrier neuron threshold multiplier
    calib_batch: int = 256
    seed: int = 0
    # Conversion (issue 3): accuracy aids on top of the threshold method.
    bias_correction: bool = True  # shift biases by the mean quantization error (empirical, layer by layer)
    threshold_search: str = "output"  # none | output: scale each layer's thresholds to minimize the logits' error
    calib_reservoir: int = 4096  # calibration sample kept per channel for percentile/mse thresholds
    weight_rounding: str = "auto"  # auto | gptq (data-aware, needs calibration data) | nearest
    step_search: bool = True  # coarsen each channel's step where the weights then fit the grid better (with gptq)
    max_memory: str = "4G"  # memory budget: refuse models that cannot fit, batch calibration to fit (resources.py)
    # The loaded calibration data (snncc.calib_data.CalibData); runtime only, never reported.
    calib_data: object = field(default=None, repr=False, compare=False)

    def validate(self) -> CompileOptions:
        if not 1 <= int(self.levels) <= 127:
            raise SnnccError(f"option --levels must be in 1..127, got {self.levels}")
        if not 1 <= int(self.timesteps) <= 1024:
            raise SnnccError(f"option --timesteps must be in 1..1024, got {self.timesteps}")
        method = self.threshold.split(":", 1)[0]
        if method not in THRESHOLD_METHODS:
            raise SnnccError(f"option --threshold must be one of max, percentile:P, mse; got {self.threshold!r}")
        if method == "percentile":
            self.percentile()  # validates P
        if self.threshold_granularity not in ("channel", "layer"):
            raise SnnccError("option --threshold-granularity must be 'channel' or 'layer', "
                             f"got {self.threshold_granularity!r}")
        _check_bits("--weight-bits", self.weight_bits)
        for name, bits in self.layer_bits.items():
            _check_bits(f"--layer-bits {name}", bits)
        if self.weight_quantizer not in WEIGHT_QUANTIZERS:
            raise SnnccError(f"option --weight-quantizer must be one of {', '.join(WEIGHT_QUANTIZERS)}; "
                             f"got {self.weight_quantizer!r}")
        if not 4 <= int(self.membrane_bits) <= 32:
            raise SnnccError(f"option --membrane-bits must be in 4..32, got {self.membrane_bits}")
        if not 0 <= int(self.membrane_shift) < int(self.membrane_bits) - 1:
            raise SnnccError(f"option --membrane-shift must be in 0..{int(self.membrane_bits) - 2}, "
                             f"got {self.membrane_shift}")
        if self.residual not in RESIDUAL_MODES:
            raise SnnccError(f"option --residual must be 'sparse' or 'sew', got {self.residual!r}")
        if not self.barrier_scale > 0:
            raise SnnccError(f"option --barrier-scale must be > 0, got {self.barrier_scale}")
        if int(self.calib_batch) < 1:
            raise SnnccError(f"option --calib-batch must be >= 1, got {self.calib_batch}")
        if self.threshold_search not in THRESHOLD_SEARCHES:
            raise SnnccError(f"option --threshold-search must be one of {', '.join(THRESHOLD_SEARCHES)}; "
                             f"got {self.threshold_search!r}")
        if not isinstance(self.bias_correction, bool):
            raise SnnccError(f"option --bias-correction must be true or false, got {self.bias_correction!r}")
        if not isinstance(self.step_search, bool):
            raise SnnccError(f"option --step-search must be true or false, got {self.step_search!r}")
        if self.weight_rounding not in ("auto", "gptq", "nearest"):
            raise SnnccError("option --weight-rounding must be 'auto', 'gptq' or 'nearest', "
                             f"got {self.weight_rounding!r}")
        from snncc.resources import parse_size

        parse_size(self.max_memory)
        if not 16 <= int(self.calib_reservoir) <= 1 << 20:
            raise SnnccError(f"option --calib-reservoir must be in 16..1048576, got {self.calib_reservoir}")
        return self

    def percentile(self) -> float:
        """P for ``percentile:P`` thresholds (default 99.99)."""
        _, _, arg = self.threshold.partition(":")
        try:
            p = float(arg) if arg else 99.99
        except ValueError:
            raise SnnccError(f"option --threshold percentile:P needs a number, got {self.threshold!r}") from None
        if not 0 < p <= 100:
            raise SnnccError(f"option --threshold percentile:P needs 0 < P <= 100, got {p}")
        return p

    def to_dict(self) -> dict:
        # calib_data is data, not an option: never in reports (and never deep-copied).
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "calib_data"}


def _check_bits(option: str, bits) -> None:
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise SnnccError(f"option {option} must be an integer in 2..8, got {bits!r}")
