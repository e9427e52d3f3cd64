"""Compile options shared by the CLI, the Python API and every pass."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

import numpy as np

from snncc.errors import SnnccError

THRESHOLD_METHODS = ("max", "percentile", "mse")
WEIGHT_QUANTIZERS = ("max", "percentile", "mse", "rescaw")
RESIDUAL_MODES = ("sparse", "sew")
THRESHOLD_SEARCHES = ("none", "output")
THRESHOLD_REFINES = ("none", "channel", "weights", "all")
WEIGHT_ROUNDINGS = ("auto", "gptq", "nearest")
PRUNE_CRITERIA = ("dead", "l1", "svs", "mp")  # passes/prune_criteria.py
PRUNE_MULTIPLE_MAX = 1024  # --prune-multiple K: 1 (no rounding) .. 1024


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
    input_scale: float = 0.0  # int8 input step s_x; 0: max|x| / 127 from the calibration data
    calib_batch: int = 256
    seed: int = 0
    # Conversion (issue 3): accuracy aids on top of the threshold method.
    bias_correction: bool = True  # shift biases by the mean quantization error (empirical, layer by layer)
    threshold_search: str = "output"  # none | output: scale each layer's thresholds to minimize the logits' error
    # sequential per-channel thresholds against the next layer's error (passes/channel_refine.py)
    threshold_refine: str = "none"  # none | channel
    calib_reservoir: int = 4096  # calibration sample kept per channel for percentile/mse thresholds
    weight_rounding: str = "auto"  # auto | gptq (data-aware, needs calibration data) | nearest
    step_search: bool = True  # coarsen each channel's step where the weights then fit the grid better (with gptq)
    # Structured pruning (passes/prune.py): fractions of channel groups to remove, or a budget.
    prune: float = 0.0  # --prune R: a fraction per layer, 0 <= R < 1
    prune_layers: dict[str, float] = field(default_factory=dict)  # --prune-layer NAME=R overrides
    prune_criterion: str = "l1"  # dead | l1 | svs | mp
    prune_target_params: int = 0  # global budget in parameters (0 = none)
    prune_target_flash: int = 0  # global budget in estimated C flash bytes (0 = none)
    prune_multiple: int = 1  # a pruned layer keeps a multiple of K channel groups (Torch-Pruning's round_to)
    max_memory: str = "4G"  # memory budget: refuse models that cannot fit, batch calibration to fit (resources.py)

    def validate(self) -> CompileOptions:
        """Check every option's type and range; SnnccError naming the option (``option=``)."""
        _check_int("levels", self.levels, 1, 127)
        _check_int("timesteps", self.timesteps, 1, 1024)
        if not isinstance(self.threshold, str) or self.threshold.split(":", 1)[0] not in THRESHOLD_METHODS:
            raise SnnccError(f"must be one of max, percentile:P, mse; got {self.threshold!r}", option="threshold")
        if self.threshold.startswith("percentile"):
            self.percentile()  # validates P
        _check_choice("threshold_granularity", self.threshold_granularity, ("channel", "layer"))
        _check_int("weight_bits", self.weight_bits, 2, 8, say_integer=True)
        if not isinstance(self.layer_bits, dict):
            raise SnnccError(f"must be a table of layer name = bits, got {self.layer_bits!r}", option="layer_bits")
        for name, bits in self.layer_bits.items():
            if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
                raise SnnccError(f"{name} must be an integer in 2..8, got {bits!r}", option="layer_bits", key=name)
        _check_choice("weight_quantizer", self.weight_quantizer, WEIGHT_QUANTIZERS)
        _check_int("membrane_bits", self.membrane_bits, 4, 32)
        _check_int("membrane_shift", self.membrane_shift, 0, int(self.membrane_bits) - 2)
        _check_choice("residual", self.residual, RESIDUAL_MODES)
        if isinstance(self.barrier_scale, bool) or not isinstance(self.barrier_scale, (int, float)) \
                or not 0 < self.barrier_scale < float("inf"):
            raise SnnccError(f"must be a finite number > 0, got {self.barrier_scale}", option="barrier_scale")
        if isinstance(self.input_scale, bool) or not isinstance(self.input_scale, (int, float)) \
                or not 0 <= self.input_scale < float("inf"):
            raise SnnccError(f"must be 0 (from the calibration data) or a finite step > 0, got {self.input_scale}",
                             option="input_scale")
        _check_int("calib_batch", self.calib_batch, 1, None)
        _check_int("seed", self.seed, 0, (1 << 32) - 1)
        _check_choice("threshold_search", self.threshold_search, THRESHOLD_SEARCHES)
        _check_choice("threshold_refine", self.threshold_refine, THRESHOLD_REFINES)
        for key in ("bias_correction", "step_search"):
            if not isinstance(getattr(self, key), bool):
                raise SnnccError(f"must be true or false, got {getattr(self, key)!r}", option=key)
        _check_choice("weight_rounding", self.weight_rounding, WEIGHT_ROUNDINGS)
        _check_int("calib_reservoir", self.calib_reservoir, 16, 1 << 20)
        self._validate_prune()
        from snncc.resources import parse_size

        parse_size(self.max_memory)
        return self

    def _validate_prune(self) -> None:
        _check_ratio("prune", self.prune)
        if not isinstance(self.prune_layers, dict):
            raise SnnccError(f"must be a table of layer name = ratio, got {self.prune_layers!r}",
                             option="prune_layers")
        for name, r in self.prune_layers.items():
            _check_ratio("prune_layers", r, key=name)
        _check_choice("prune_criterion", self.prune_criterion, PRUNE_CRITERIA)
        _check_int("prune_target_params", self.prune_target_params, 0, None)
        _check_int("prune_target_flash", self.prune_target_flash, 0, None)
        _check_int("prune_multiple", self.prune_multiple, 1, PRUNE_MULTIPLE_MAX)
        if self.prune_target_params and self.prune_target_flash:
            raise SnnccError(": give one budget, not both --prune-target-params and --prune-target-flash",
                             option="prune_target_flash")
        if (self.prune_target_params or self.prune_target_flash) and (self.prune or self.prune_layers):
            raise SnnccError(": a budget (--prune-target-params/--prune-target-flash) picks the ratios itself; "
                             "drop --prune/--prune-layer", option="prune_target_params" if self.prune_target_params
                             else "prune_target_flash")

    def percentile(self) -> float:
        """P for ``percentile:P`` thresholds (default 99.99)."""
        _, _, arg = self.threshold.partition(":")
        try:
            p = float(arg) if arg else 99.99
        except ValueError:
            raise SnnccError(f"percentile:P needs a number, got {self.threshold!r}", option="threshold") from None
        if not 0 < p <= 100:
            raise SnnccError(f"percentile:P needs 0 < P <= 100, got {p}", option="threshold")
        return p

    def to_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


def _check_int(option: str, value, lo: int, hi: int | None, *, say_integer: bool = False) -> None:
    span = f">= {lo}" if hi is None else f"in {lo}..{hi}"
    wrong_type = isinstance(value, bool) or not isinstance(value, (int, np.integer))
    if wrong_type or not lo <= int(value) <= (hi if hi is not None else int(value)):
        raise SnnccError(f"must be {'an integer ' if wrong_type or say_integer else ''}{span}, got {value!r}",
                         option=option)


def _check_ratio(option: str, value, key: str | None = None) -> None:
    """A pruning fraction: a number in [0, 1) (removing every channel is never possible)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not 0 <= float(value) < 1:
        where = f"{key}: " if key is not None else ""
        raise SnnccError(f"{where}must be a fraction in [0, 1), got {value!r}", option=option, key=key)


def _check_choice(option: str, value, choices) -> None:
    if value not in choices:
        raise SnnccError(f"must be one of {', '.join(choices)}; got {value!r}", option=option)
