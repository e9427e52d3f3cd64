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
from snncc.pass_context import PassContext

REPORT_SCHEMA_VERSION = 1


@dataclass
class CompileResult:
    float_graph: Graph  # the imported float ANN (before canonicalize)
    snn_graph: Graph  # float SNN, after convert
    int_graph: Graph  # integer SNN: the golden model
    ann_graph: Graph | None = None  # the float graph `convert` consumed (calibrated)
    context: PassContext = field(default_factory=PassContext)  # the pipeline's options, calibration data, notes
    report: dict = field(default_factory=dict)
    output_dir: Path | None = None


def build_snn(model_path: Path | str, options: CompileOptions, calib, *,
              dump_after: Iterable[str] = (), echo: Callable[[str], None] = print,
              pipeline: list[str] | None = None, stop_after: str | None = None,
              start_from: Path | str | None = None,
              flash_bytes: Callable[[Graph], int] | None = None) -> CompileResult:
    """Load the model and run the pass pipeline; no files are written.

    ``stop_after`` ends the pipeline after that pass.  ``start_from`` resumes from an IR
    saved by ``save_ir`` (``--stop-after``): the passes it records in ``meta["passes"]``
    are skipped; the ONNX model stays the float reference of the report.  ``flash_bytes``
    (the target's, when it has one) measures --prune-target-flash on the emitted size.  The oracle's
    ANN and the float SNN are picked by ``graph.stage``: the float graph that the
    float -> snn pass consumed, and what it produced.
    """
    from snncc import resources
    from snncc.calib_data import load_calib
    from snncc.frontend.onnx_import import load_onnx
    from snncc.pass_manager import run_pipeline

    options.validate()
    check_pass_names(dump_after, pipeline)
    graph = load_onnx(model_path)
    graph.verify()
    resources.check(graph, options.max_memory)  # before the calibration data or any activation exists
    if calib is None:
        raise SnnccError("option --calib is required: give a .npy/.npz of input samples "
                         "(N x C x H x W), or '--calib random' for structure tests only")
    input_shape = graph.values[graph.inputs[0]].shape
    data = calib if hasattr(calib, "batches") else load_calib(calib, input_shape, seed=options.seed)
    current = _resume(graph, start_from) if start_from is not None else graph
    ctx = PassContext(options, data, list(current.meta.get("notes", [])))  # a resumed IR's notes go on
    names = pipeline_slice(pipeline, current.meta.get("passes", []) if start_from is not None else [], stop_after)
    ann = snn = None
    if current.stage == "snn":
        snn = current
    pruned_from = None
    for i, name in enumerate(names):
        if name == "prune":
            pruned_from = (current, names[i:], list(ctx.notes))
        before = current
        current = run_pipeline(current, [name], ctx,
                               dump_after=[name] if name in set(dump_after) else [], echo=echo)
        if before.stage == "float" and current.stage == "snn":
            ann, snn = before, current
    result = CompileResult(float_graph=graph, snn_graph=snn if snn is not None else current, int_graph=current,
                           ann_graph=ann, context=ctx)
    if flash_bytes is not None and options.prune_target_flash and pruned_from and current.stage == "int":
        result = _meet_flash(result, pruned_from, flash_bytes, echo)
    return result


FLASH_BISECTIONS = 4  # compiles spent narrowing the estimate budget once the emitted size fits


def _meet_flash(result: CompileResult, pruned_from: tuple, flash_bytes: Callable[[Graph], int],
                echo: Callable[[str], None]) -> CompileResult:
    """--prune-target-flash against the target's emitted bytes, not prune's estimate.

    The prune pass meets the budget on its own estimate, which knows nothing of a backend's
    layout (the C block kernels pad output channels to 16 and input channels to 4).  While
    the emitted size is over the budget, the rest of the pipeline runs again from the
    calibrated graph with the estimate's budget scaled by budget / emitted (at least one byte
    less each time, down to the smallest reachable network); then a few bisections between
    the largest estimate budget that fit and the smallest that did not keep as many channels
    as fit."""
    from dataclasses import replace

    from snncc.pass_manager import run_pipeline

    options = result.context.options
    start, names, notes = pruned_from
    budget = int(options.prune_target_flash)

    def trial(est: int) -> tuple[CompileResult, int]:
        echo(f"prune: compiling again with an estimate budget of {est} B (emitted flash budget {budget} B)")
        ctx = PassContext(replace(options, prune_target_flash=est), result.context.calib, list(notes))
        ann = snn = None
        current = start
        for name in names:
            before = current
            current = run_pipeline(current, [name], ctx, echo=echo)
            if before.stage == "float" and current.stage == "snn":
                ann, snn = before, current
        res = CompileResult(float_graph=result.float_graph, snn_graph=snn, int_graph=current, ann_graph=ann,
                            context=PassContext(options, ctx.calib, ctx.notes))
        return res, int(flash_bytes(current))

    got = int(flash_bytes(result.int_graph))
    est = hi = budget  # the pass met the budget on its estimate
    tries = [(est, got)]
    floor_ = int(result.int_graph.meta["prune"].get("flash_floor_estimate", 0))
    while got > budget:
        if est <= floor_:
            raise SnnccError(f": {budget} bytes is below the smallest emitted size this target reaches, {got} "
                             "bytes (every prunable layer keeping one channel, the first and last layers whole)",
                             option="prune_target_flash")
        hi = est
        est = max(floor_, min(est - 1, int(est * budget / got)))
        result, got = trial(est)
        tries.append((est, got))
    lo = est
    for _ in range(FLASH_BISECTIONS if hi > lo else 0):
        if hi - lo <= max(1, budget // 200):
            break
        mid = (lo + hi) // 2
        res, size = trial(mid)
        tries.append((mid, size))
        if size <= budget:
            lo, result, got = mid, res, size
        else:
            hi = mid
    rec = result.int_graph.meta["prune"]
    rec["target_flash_bytes"] = budget
    rec["flash_bytes_emitted"] = got
    rec["flash_budget_tries"] = [{"estimate_budget": e, "emitted": b} for e, b in tries]
    return result


def pipeline_slice(pipeline: list[str] | None, done: list[str], stop_after: str | None) -> list[str]:
    """The passes still to run: after ``done`` (a prefix of the pipeline), up to ``stop_after``."""
    from snncc.passes import DEFAULT_PIPELINE

    names = list(pipeline or DEFAULT_PIPELINE)
    if list(done) != names[:len(done)]:
        raise SnnccError(f"option --start-from: the IR ran passes {', '.join(done) or 'none'}, which is not a "
                         f"start of the pipeline {', '.join(names)}")
    if stop_after is not None:
        if stop_after not in names:
            raise SnnccError(f"option --stop-after: unknown pass {stop_after!r}; the pipeline is {', '.join(names)}")
        if names.index(stop_after) < len(done):
            raise SnnccError(f"option --stop-after: pass {stop_after!r} already ran in the --start-from IR")
        names = names[:names.index(stop_after) + 1]
    return names[len(done):]


def _resume(model_graph: Graph, start_from) -> Graph:
    """The IR to resume from, checked against the model it claims to come from."""
    from snncc.irio import load_ir

    graph = load_ir(start_from)
    graph.verify()
    if graph.stage == "int":
        raise SnnccError("option --start-from: the IR is already the integer SNN (stage 'int'); nothing to resume")
    want = [tuple(model_graph.values[v].shape) for v in model_graph.inputs]
    got = [tuple(graph.values[v].shape) for v in graph.inputs]
    if want != got:
        raise SnnccError(f"option --start-from: the IR's input shapes {got} differ from the model's {want}")
    return graph


def check_pass_names(dump_after: Iterable[str], pipeline: list[str] | None = None) -> None:
    """Refuse a --dump-ir-after name that is not a pass of the pipeline, listing the valid ones."""
    from snncc.passes import DEFAULT_PIPELINE

    names = list(pipeline or DEFAULT_PIPELINE)
    unknown = [p for p in dump_after if p not in names]
    if unknown:
        raise SnnccError(f": no pass named {', '.join(map(repr, unknown))}; the passes are {', '.join(names)}",
                         option="dump_ir_after")


def make_report(result: CompileResult, options: CompileOptions, *, model: str, target: str) -> dict:
    """Assemble report.json (schema in docs/report.md)."""
    from snncc import resources
    from snncc.fidelity import fidelity_report
    from snncc.int_eval import integer_scores
    from snncc.memory_report import memory_report

    data = result.context.calib
    # the report's simulations run on a sample budget: every sample of a small model
    samples = None if data is None else resources.sample_budget(result.snn_graph, data.n)
    if samples is not None and samples < data.n:
        result.context.note(f"report: simulated figures on {samples} of {data.n} calibration samples "
                            f"({resources.activation_elements(result.snn_graph)} activation elements per sample)")
    ann_predictions: list = []  # the ANN runs once, for both sections
    fid = fidelity_report(result.float_graph, result.snn_graph, data, options,
                          ann_predictions=ann_predictions, max_samples=samples)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "model": model,
        "target": target,
        "options": options.to_dict(),
    }
    report.update(fid)
    scores = integer_scores(result, options, ann_predictions[0] if ann_predictions else None, limit=samples)
    report["accuracy"] = _accuracy_section(fid.get("accuracy", {}), scores)
    report["memory"] = memory_report(result.int_graph, result.float_graph)
    meta = result.int_graph.meta
    report["quantization"] = {
        "input_scale": float(meta["input_scale"]),
        "output_scales": {name: [float(v) for v in scales] for name, scales in
                          sorted(meta.get("output_scales", {}).items())},
        "timesteps": int(meta.get("timesteps", 1)),
        "note": "x_q = clamp(round_half_even(x / input_scale), -128, 127); logits = out_q * S[o] / T",
    }
    report["notes"] = list(result.context.notes)
    if meta.get("prune"):
        report["prune"] = _prune_section(meta["prune"], report)
    if result.snn_graph.meta.get("residual_joins"):
        report["residual"] = _residual_section(result.snn_graph, data, options, samples)
    return report


def _residual_section(snn_graph: Graph, data, options: CompileOptions, limit: int | None = None) -> dict:
    """Per-block activity and the avalanche factor (Sparse-ResNet analysis) on calibration ``data``."""
    from snncc import resources
    from snncc.activity import simulate_activity

    # one simulation with every join's traces: as many samples as fit the memory budget
    # (activity["samples"] says how many; a ResNet-50 at 224x224 took 24 GB with 256)
    traced = [n.output for n in snn_graph.nodes] * 2
    count = resources.batch_size(snn_graph, options, copies=3, cap=data.n if limit is None else limit, kept=traced)
    _, activity = simulate_activity(snn_graph, data.take(count))
    activity["joins"] = snn_graph.meta.get("residual_joins", [])
    activity["mode"] = options.residual
    return activity


def _prune_section(prune: dict, report: dict) -> dict:
    """The prune pass's record plus what the compiled network measured (SOPs, integer parameter bytes)."""
    section = dict(prune)
    section["sops_measured"] = report.get("activity", {}).get("sops")
    section["param_bytes_after"] = report["memory"].get("param_bytes")
    return section


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


def spike_rates(graph: Graph, report: dict | None) -> dict[str, float]:
    """Neuron output value -> measured spike rate, from the report's per-layer entries.

    The driver measures activity once (the fidelity report) and hands the rates to the
    emitter, which picks event-driven or dense kernels from them.
    """
    if not report or not isinstance(report.get("layers"), list):
        return {}
    by_name = {n.name: n for n in graph.nodes if n.op == "neuron"}
    rates = {}
    for layer in report["layers"]:
        if not isinstance(layer, dict):
            continue
        node = by_name.get(layer.get("name"))
        rate = layer.get("spike_rate")
        if node is not None and isinstance(rate, (int, float)):
            rates[node.output] = float(rate)
    return rates


def emit_target(result: CompileResult, target: str, out_dir: Path, *, name: str, **target_options) -> dict:
    """Write the target's files into ``out_dir`` (already created, empty); return its report keys."""
    from snncc.backends import target as get_target

    return get_target(target).emit(result.int_graph, out_dir, name=name,
                                   spike_rates=spike_rates(result.int_graph, result.report), **target_options)


def compile_model(model_path: Path | str, *, options: CompileOptions | None = None, calib=None,
                  target: str = "c", output: Path | str | None = None, force: bool = False,
                  name: str | None = None, dump_after: Iterable[str] = (),
                  echo: Callable[[str], None] = print, stop_after: str | None = None,
                  start_from: Path | str | None = None, target_options: dict | None = None,
                  inputs: Iterable[Path | str] = (), finetune=None) -> CompileResult:
    """Compile an ONNX model for ``target``; write ``output`` atomically when given.

    ``inputs`` are further files the caller read (its config file): like the model,
    the calibration data and ``start_from``, ``force`` never deletes a folder holding one.

    With ``stop_after`` the pipeline ends after that pass and ``output`` receives only the
    IR (``<name>.json`` + ``<name>.npz``), which ``start_from`` resumes from.

    ``finetune`` (a ``snncc.finetune.run.Request``) fine-tunes the integer SNN before the
    report and the emit; its data is checked before the slow work.
    """
    from snncc.backends import target as get_target

    options = options or CompileOptions()
    target_options = dict(target_options or {})
    # an unknown --target, a bad option or options the target cannot carry fail before the slow work
    get_target(target).check_tools(**target_options, options=options)
    model_path = Path(model_path)
    if name is None:
        name = default_name(model_path.stem, target)
    check_name(name, target)
    check_pass_names(dump_after)
    protect = [model_path, start_from, *inputs,
               *([calib] if isinstance(calib, (str, Path)) and calib != "random" else [])]
    if output is not None:
        check_output_dir(Path(output), force, protect=protect)  # fail before the slow work
    tune_data = None
    if finetune is not None:
        from snncc.finetune.run import check_request
        from snncc.frontend.onnx_import import load_onnx

        g0 = load_onnx(model_path)
        tune_data = check_request(finetune, tuple(g0.values[g0.inputs[0]].shape))
    result = build_snn(model_path, options, calib, dump_after=dump_after, echo=echo, stop_after=stop_after,
                       start_from=start_from, flash_bytes=getattr(get_target(target), "flash_bytes", None))
    if tune_data is not None and result.int_graph.stage == "int":
        from snncc.finetune.run import tune

        tune(result, options, finetune, *tune_data, echo=echo)
    if stop_after is not None:
        if output is not None:
            from snncc.irio import save_ir

            with atomic_output_dir(Path(output), force=force, protect=protect) as tmp:
                save_ir(result.int_graph, tmp / name)
            result.output_dir = Path(output)
        return result
    if result.int_graph.stage != "int":
        raise SnnccError(f"the pipeline ended at stage {result.int_graph.stage!r}, not the integer SNN; "
                         "use --stop-after to save an intermediate IR")
    result.report = make_report(result, options, model=model_path.name, target=target)
    if output is not None:
        with atomic_output_dir(Path(output), force=force, protect=protect) as tmp:
            data = result.context.calib
            if data is not None and "samples" not in target_options:  # a testbench's real inputs
                from snncc.sim.int_runtime import quantize_input

                target_options["samples"] = quantize_input(result.int_graph, data.take(min(4, data.n)))
            result.report.update(emit_target(result, target, tmp, name=name, **target_options))
            write_text(tmp / "report.json", json.dumps(result.report, indent=2, sort_keys=True,
                                                       default=_json_default) + "\n")
        result.output_dir = Path(output)
    return result


def c_safe_name(stem: str) -> str:
    """An ASCII C identifier derived from the model file name (never from model contents):
    ``réseau`` -> ``r_seau``."""
    out = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in stem.lower()).strip("_")
    if not out or out[0].isdigit() or out.startswith("snncc"):
        out = "model_" + out
    return out[:40]


# Files the compiler itself writes into every output folder.
REPORT_FILES = ("report.json", "report.html")


def name_problem(name: str, target: str) -> str | None:
    """Why ``name`` cannot name ``target``'s output (None when it can): not an ASCII
    identifier, a file name the folder already uses, or a C header it would shadow."""
    from snncc.backends import target as get_target

    backend = get_target(target)
    problem = backend.name_problem(name)
    if problem is not None:
        return problem
    clash = next((f for f in backend.named_files(name) if f.lower() in REPORT_FILES), None)
    return None if clash is None else f"would emit {clash}, which overwrites the compile report"


def check_name(name: str, target: str) -> None:
    problem = name_problem(name, target)
    if problem is not None:
        raise SnnccError(f": {name!r} {problem} (choose another --name)", option="name")


def default_name(stem: str, target: str) -> str:
    """The output's name when --name is not given: the file name, made safe (never refused)."""
    name = c_safe_name(stem)
    return name if name_problem(name, target) is None else "model_" + name


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)
