"""The hls4ml half of bench/fpga_hls4ml.py; it runs in hls4ml's own environment, not snncc's.

    /work/hls4ml-venv/bin/python bench/hls4ml_peer.py SPEC.json IN.npz OUT.npz WORK_DIR

SPEC.json (written by bench/fpga_hls4ml.py) lists the layers of one network in hls4ml's
own vocabulary (Keras-style layer dicts, channels last) with the ap_fixed/ap_int type of
every weight, bias, accumulator and result; IN.npz holds the weight arrays the spec names
and ``x`` (the inputs, NHWC).  The network is built with ``ModelGraph.from_layer_list``,
the frontend every hls4ml converter ends in, compiled with hls4ml's C emulation
(g++ and the ``ap_types`` headers, no Vivado) and run with ``trace`` (``predict`` plus the
per-layer outputs);
OUT.npz gets ``y`` (the outputs as hls4ml computed them), ``trace_<layer>`` for the traced
layers and ``seconds`` (compile and run).
This file imports hls4ml and numpy only, never snncc.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def layer_list(spec: dict, arrays) -> list[dict]:
    layers = []
    for entry in spec["layers"]:
        layer = {k: v for k, v in entry.items() if k not in ("precision", "arrays", "trace")}
        for key, name in entry.get("arrays", {}).items():
            layer[key] = np.asarray(arrays[name], dtype=np.float64)
        layers.append(layer)
    return layers


def hls_config(spec: dict) -> dict:
    names = {e["name"]: {"Precision": e["precision"], "Trace": bool(e.get("trace"))}
             for e in spec["layers"] if e.get("precision")}
    return {"Model": {"Precision": spec["default_precision"], "ReuseFactor": 1, "Strategy": "Latency"},
            "LayerName": names}


def main() -> None:
    spec_path, in_path, out_path, work = sys.argv[1:5]
    import hls4ml
    from hls4ml.model.graph import ModelGraph

    spec = json.loads(open(spec_path).read())
    arrays = np.load(in_path)
    config = hls4ml.utils.config.create_config(output_dir=work, project_name="peer", backend="Vivado",
                                               io_type="io_parallel")
    config["HLSConfig"] = hls_config(spec)
    model = ModelGraph.from_layer_list(config, layer_list(spec, arrays))
    x = np.ascontiguousarray(arrays["x"], dtype=np.float64)
    t0 = time.time()
    if any(e.get("trace") for e in spec["layers"]):
        y, trace = model.trace(x)  # compiles with the trace hooks, then runs every sample
    else:
        model.compile()
        y, trace = model.predict(x), {}
    y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
    np.savez(out_path, y=y, seconds=time.time() - t0, hls4ml_version=hls4ml.__version__,
             **{f"trace_{k}": np.asarray(v, dtype=np.float64) for k, v in trace.items()})


if __name__ == "__main__":
    main()
