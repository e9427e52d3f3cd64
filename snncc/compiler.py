"""The compile driver: ONNX file -> integer SNN -> emitted target + report.json.

This is what `snncc compile` and `snncc.compile_model` call.  It owns the order of
the work (load, passes, reports, emit) and the atomic write of the output folder;
the numerics live in the passes and backends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.options import CompileOptions
from snncc.outdir import atomic_output_dir, check_output_dir, write_text

REPORT_SCHEMA_VERSION = 1
TARGETS = ("c", "python", "fpga")


@dataclass
class CompileResult:
    float_graph: Graph  # the imported float ANN (before canonicalize)
    snn_graph: Graph  # float SNN, after convert
    int_graph: Graph  # integer SNN: the golden model
    ann_graph: Graph | None = None  # the float graph `convert` consumed (calibrated)
    report: dict = field(default_factory=dict)
    output_dir: Path | None = None


def find_default_calib(model_path: Path) -> Path | str | None:
    """The calibration-file convention when --calib is not given.

    1. ``snncc.toml`` next to the model with ``[compile] calib = "file.npz"``
       (relative to the TOML file, or ``"random"``);
    2. a sibling ``<model stem>.calib.npz``.
    """
    from snncc.config import read_compile_calib

    model_path = Path(model_path)
    toml_path = model_path.parent / "snncc.toml"
    if toml_path.is_file():
        calib = read_compile_calib(toml_path)
        if calib is not None:
            return calib
    sibling = model_path.with_name(model_path.stem + ".calib.npz")
    return sibling if sibling.is_file() else None


def build_snn(model_path: Path | str, options: CompileOptions, calib, *,
              dump_after: Iterable[str] = (), echo: Callable[[str], None] = print,
              pipeline: list[str] | None = None) -> CompileResult:
    """Load the model and run the pass pipeline; no files are written."""
    from snncc.calib_data import load_calib
    from snncc.frontend.onnx_import import load_onnx
    from snncc.pass_manager import run_pipeline
    from snncc.passes import DEFAULT_PIPELINE

    options.validate()
    graph = load_onnx(model_path)
    graph.verify()
    if calib is None:
        raise SnnccError("option --calib is required: give a .npy/.npz of input samples "
                         "(N x C x H x W), or '--calib random' for structure tests only")
    input_shape = graph.values[graph.inputs[0]].shape
    options.calib_data = calib if hasattr(calib, "batches") else load_calib(calib, input_shape, seed=options.seed)
    names = list(pipeline or DEFAULT_PIPELINE)
    stages: dict[str, Graph] = {}

    def keep(name: str, g: Graph) -> None:
        stages[name] = g

    current = graph
    for name in names:
        current = run_pipeline(current, [name], options,
                               dump_after=[name] if name in set(dump_after) else [], echo=echo)
        keep(name, current)
    snn = stages.get("convert", current)
    before_convert = names[names.index("convert") - 1] if "convert" in names[1:] else None
    return CompileResult(float_graph=graph, snn_graph=snn, int_graph=current,
                         ann_graph=stages.get(before_convert, graph))


def make_report(result: CompileResult, options: CompileOptions, *, model: str, target: str) -> dict:
    """Assemble report.json (schema in docs/report.md)."""
    from snncc.fidelity import fidelity_report
    from snncc.int_eval import integer_scores
    from snncc.memory_report import memory_report

    fid = fidelity_report(result.float_graph, result.snn_graph, options.calib_data, options)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "model": model,
        "target": target,
        "options": options.to_dict(),
    }
    report.update(fid)
    report["accuracy"] = _accuracy_section(fid.get("accuracy", {}), integer_scores(result, options))
    report["memory"] = memory_report(result.int_graph, result.float_graph)
    meta = result.int_graph.meta
    report["quantization"] = {
        "input_scale": float(meta["input_scale"]),
        "output_scales": {name: [float(v) for v in scales] for name, scales in
                          sorted(meta.get("output_scales", {}).items())},
        "timesteps": int(meta.get("timesteps", 1)),
        "note": "x_q = clamp(round_half_even(x / input_scale), -128, 127); logits = out_q * S[o] / T",
    }
    report["notes"] = list(result.int_graph.meta.get("notes", []))
    if result.snn_graph.meta.get("residual_joins"):
        report["residual"] = _residual_section(result.snn_graph, options)
    return report


def _residual_section(snn_graph: Graph, options: CompileOptions) -> dict:
    """Per-block activity and the avalanche factor (Sparse-ResNet analysis)."""
    from snncc.activity import simulate_activity

    data = options.calib_data
    _, activity = simulate_activity(snn_graph, data.take(data.n))
    activity["joins"] = snn_graph.meta.get("residual_joins", [])
    activity["mode"] = options.residual
    return activity


def _accuracy_section(float_acc: dict, int_scores: dict) -> dict:
    """report["accuracy"]: the integer SNN (what every target runs) is "snn";
    the float SNN before weight quantization is kept as "float_snn"."""
    acc = {"top1_agreement": int_scores.get("agreement")}
    if int_scores.get("snn_accuracy") is not None:
        acc["ann"] = int_scores["ann_accuracy"]
        acc["snn"] = int_scores["snn_accuracy"]
    if "snn" in float_acc:
        acc["float_snn"] = float_acc["snn"]
    if "top1_agreement" in float_acc:
        acc["float_snn_top1_agreement"] = float_acc["top1_agreement"]
    return acc


def emit_target(result: CompileResult, target: str, out_dir: Path, *, name: str, lanes: int = 1,
                samples=None) -> dict:
    """Write the target's files into ``out_dir`` (already created, empty)."""
    extra: dict = {}
    if target == "c":
        from snncc.backends.c.emit import emit_c

        info = emit_c(result.int_graph, out_dir, name=name, report=result.report)
        if isinstance(info, dict):
            extra["c"] = info
    elif target == "python":
        from snncc.irio import save_ir

        save_ir(result.int_graph, out_dir / name)
    elif target == "fpga":
        from snncc.backends.fpga.emit import emit_fpga
        from snncc.backends.python.int_runtime import quantize_input

        # the testbench's default samples: extremes, random, and the first calibration samples
        extra["fpga"] = emit_fpga(result.int_graph, out_dir, name=name, lanes=lanes,
                                  samples=None if samples is None else quantize_input(result.int_graph, samples))
    return extra


def compile_model(model_path: Path | str, *, options: CompileOptions | None = None, calib=None,
                  target: str = "c", output: Path | str | None = None, force: bool = False,
                  name: str | None = None, dump_after: Iterable[str] = (),
                  echo: Callable[[str], None] = print, lanes: int = 1) -> CompileResult:
    """Compile an ONNX model for ``target``; write ``output`` atomically when given."""
    options = options or CompileOptions()
    if target not in TARGETS:
        raise SnnccError(f"option --target must be one of {', '.join(TARGETS)}, got {target!r}")
    model_path = Path(model_path)
    if target == "fpga":
        from snncc.backends.fpga.netlist import check_lanes

        check_lanes(lanes)
    if output is not None:
        check_output_dir(Path(output), force)  # fail before the slow work
    result = build_snn(model_path, options, calib, dump_after=dump_after, echo=echo)
    result.report = make_report(result, options, model=model_path.name, target=target)
    if output is not None:
        name = name or c_safe_name(model_path.stem)
        with atomic_output_dir(Path(output), force=force) as tmp:
            samples = options.calib_data.take(min(4, options.calib_data.n)) if target == "fpga" else None
            result.report.update(emit_target(result, target, tmp, name=name, lanes=lanes, samples=samples))
            write_text(tmp / "report.json", json.dumps(result.report, indent=2, sort_keys=True,
                                                       default=_json_default) + "\n")
        result.output_dir = Path(output)
    return result


def c_safe_name(stem: str) -> str:
    """A C identifier derived from the model file name (never from model contents)."""
    out = "".join(ch if ch.isalnum() else "_" for ch in stem.lower()).strip("_")
    if not out or out[0].isdigit():
        out = "model_" + out
    return out[:40]


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)
