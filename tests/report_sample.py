"""A report.json dict built by hand to the documented schema (docs/report.md).

Used by the text and HTML report tests so that they do not need a compile. One
layer name is hostile on purpose: HTML markup, mathtext dollars, a control char.
"""

from __future__ import annotations

import copy

HOSTILE_NAME = '<script>alert("x")</script>$\\frac{a}{$b&c\x07'

_REPORT = {
    "schema_version": 1,
    "model": "digits_cnn.onnx",
    "target": "c",
    "options": {"levels": 4, "timesteps": 1, "weight_bits": 8, "threshold": "mse", "layer_bits": {"first": 8}},
    "accuracy": {"ann": 0.9926, "snn": 0.9870, "top1_agreement": 0.9907},
    "activity": {"spike_events": 812.25, "spike_levels": 1402.5, "sops": 61234.0},
    "energy": {"ann_pj": 1311824.0, "snn_pj": 55110.6,
               "model": "E_MAC = 4.6 pJ, E_AC = 0.9 pJ (45 nm, Horowitz 2014); SOPs = spikes x fan-out"},
    "memory": {
        "weight_bits": 226560, "state_bits": 4096, "fp32_weight_bytes": 113280, "compression": 3.98,
        "layers": [
            {"name": "conv1", "weight_bits": 1152, "bias_bits": 512, "threshold_bits": 512, "state_bits": 0},
            {"name": HOSTILE_NAME, "weight_bits": 73728, "bias_bits": 1024, "threshold_bits": 1024,
             "state_bits": 2048},
            {"name": "fc", "weight_bits": 151680, "bias_bits": 320, "threshold_bits": 0, "state_bits": 0},
        ],
    },
    "layers": [
        {"name": "conv1", "op": "conv", "shape": [16, 8, 8], "spike_rate": 0.41, "mean_level": 1.7,
         "sops": 0.0, "ann_macs": 9216, "weight_bits": 8, "level_hist": [604, 210, 130, 70, 10], "cosine": 0.991},
        {"name": HOSTILE_NAME, "op": "conv", "shape": [32, 4, 4], "spike_rate": 0.23, "mean_level": 1.2,
         "sops": 43000.0, "ann_macs": 147456, "weight_bits": 8, "level_hist": [394, 70, 30, 16, 2],
         "cosine": 0.978},
        {"name": "fc", "op": "dense", "shape": [10], "spike_rate": None, "mean_level": None,
         "sops": 18234.0, "ann_macs": 5120, "weight_bits": 8},
    ],
    "c_memory": {"arena_bytes": 3072, "peak_live_bytes": 2816, "arena_over_peak": 1.0909, "membrane_bytes": 512,
                 "weight_bytes": 30112, "buffers": 5, "layers": []},
    "notes": ["dropped trailing Softmax (argmax unchanged)"],
}


def sample_report() -> dict:
    return copy.deepcopy(_REPORT)
