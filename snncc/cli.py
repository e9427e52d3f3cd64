"""The `snncc` command line (click).

Every user mistake surfaces as one line on stderr and exit code 2; see
:class:`snncc.errors.SnnccError`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
import numpy as np

from snncc import __version__
from snncc.backends import names as target_names
from snncc.cli_options import (
    check_ray_options,
    config_in_use,
    missing_calib_where,
    parse_layer_bits,
    parse_prune_layers,
    ray_options,
    remember_config,
)
from snncc.errors import SnnccError
from snncc.options import PRUNE_CRITERIA


class _Group(click.Group):
    """Turns SnnccError and click's usage errors into one line and exit code 2."""

    def parse_args(self, ctx, args):
        ctx.meta["snncc.argv"] = list(args)  # the raw words, to explain a stray value after a flag
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if _is_help_request(exc):
                raise
            _fail(ctx, usage_message(exc, args, ctx))

    def invoke(self, ctx):
        from snncc.config import describe_error

        try:
            return super().invoke(ctx)
        except SnnccError as exc:
            _fail(ctx, describe_error(exc, ctx.meta.get("snncc.config")))
        except click.UsageError as exc:  # bad words for a subcommand: parsed inside Group.invoke
            if _is_help_request(exc):
                raise
            sub = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            sub_ctx = exc.ctx or (click.Context(sub, info_name=ctx.invoked_subcommand, parent=ctx) if sub else ctx)
            _fail(ctx, usage_message(exc, ctx.meta.get("snncc.argv", []), sub_ctx))


def _fail(ctx: click.Context, message: str) -> None:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    ctx.exit(2)


def _is_help_request(exc: click.UsageError) -> bool:
    # `snncc` alone prints the help (click >= 8.2 raises it as a UsageError subclass).
    help_error = getattr(click.exceptions, "NoArgsIsHelpError", None)
    return help_error is not None and isinstance(exc, help_error)


def usage_message(exc: click.UsageError, argv: list[str], ctx: click.Context) -> str:
    """click's multi-line usage error as one line in snncc's style: what is wrong, with which option.

    ``ctx`` is the context of the command whose words were wrong (click leaves
    ``exc.ctx`` unset for some parser errors).
    """
    ctx = exc.ctx or ctx
    cmd = ctx.command
    if isinstance(exc, click.MissingParameter) and exc.param is not None:
        msg = f"{_param_label(exc.param)} is required"
    elif isinstance(exc, click.BadParameter) and exc.param is not None:
        msg = f"{_param_label(exc.param)}: {_sentence(exc.message)}"
    elif isinstance(exc, click.NoSuchOption):
        msg = f"no such option {exc.option_name}"
        if exc.possibilities:
            msg += f" (did you mean {' or '.join(exc.possibilities)}?)"
    elif isinstance(exc, click.BadOptionUsage) and _flag(cmd, exc.option_name) is not None:
        msg = _flag_message(_flag(cmd, exc.option_name), exc.option_name, None)
    elif "extra argument" in exc.message:
        msg = _extra_after_flag(exc, cmd, argv) or _sentence(exc.format_message()).removeprefix("got ")
    else:
        msg = _sentence(exc.format_message()).replace("requires an argument", "needs a value")
    return f"{msg}; see '{ctx.command_path} --help'"


def _param_label(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return f"option {max(param.opts, key=len)}"
    return f"argument {param.human_readable_name}"


def _sentence(text: str) -> str:
    text = re.sub(r"'(-{1,2}[\w-]+)'", r"\1", " ".join(str(text).split()).rstrip("."))  # 'option --x'
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _flag(cmd: click.Command | None, word: str) -> click.Option | None:
    """The on/off option that ``word`` (e.g. --step-search, --no-step-search, --force) names."""
    for param in cmd.params if cmd is not None else ():
        if isinstance(param, click.Option) and param.is_flag and word in (*param.opts, *param.secondary_opts):
            return param
    return None


def _flag_message(flag: click.Option, word: str, value: str | None) -> str:
    forms = " or ".join([*flag.opts, *flag.secondary_opts])
    got = f", got {value!r} after it" if value is not None else ""
    return f"option {word} is a flag and takes no value{got} (write {forms} alone)"


def _extra_after_flag(exc: click.UsageError, cmd: click.Command | None, argv: list[str]) -> str | None:
    """``--step-search 1``: click only sees an extra argument '1'; name the flag it follows."""
    for i in range(1, len(argv)):
        flag = _flag(cmd, argv[i - 1])
        if flag is not None and not argv[i].startswith("-") and f"({argv[i]}" in exc.message:
            return _flag_message(flag, argv[i - 1], argv[i])
    return None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="""\b
Examples:
  snncc inspect model.onnx
  snncc compile model.onnx --target c --calib calib.npz -o build/model
  snncc verify model.onnx --target c --calib calib.npz --data test.npz --max-top1-drop 1.0
  snncc run model.onnx --input x.npy --output y.npy
""")
@click.version_option(__version__, prog_name="snncc")
def cli():
    """snncc: compile a trained CNN (ONNX) into an integer-only spiking network
    and emit bit-exact code for firmware (C) or Python."""


# --- inspect ---------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  snncc inspect model.onnx
  snncc inspect model.onnx --canonical     # after BatchNorm/affine folding
""")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--canonical", is_flag=True, help="Show the IR after the canonicalize pass.")
def inspect(model: Path, canonical: bool):
    """Print the graph, shapes, parameters, MACs and the ops that will not convert."""
    from snncc.frontend.onnx_import import import_model, list_unsupported
    from snncc.frontend.reader import read_model
    from snncc.graph_stats import graph_totals, node_macs, node_param_count

    proto, base_dir = read_model(model)
    unsupported = list_unsupported(proto, base_dir)
    if unsupported:
        click.echo(f"{model.name}: {len(unsupported)} node(s) will not convert:")
        for node, op, reason in unsupported:
            click.echo(f"  {op:<20s} {_clip(node, 32):<32s} {reason}")
        click.get_current_context().exit(2)
    graph = import_model(proto, base_dir)
    if canonical:
        from snncc.pass_context import PassContext
        from snncc.passes import canonicalize

        graph = canonicalize.run(graph, PassContext())
    click.echo(f"model {model.name}: input {graph.inputs[0]} "
               f"{list(graph.values[graph.inputs[0]].shape)} (per sample)")
    click.echo(f"{'node':<32s} {'op':<16s} {'output shape':<18s} {'params':>10s} {'MACs':>12s}")
    for node in graph.nodes:
        shape = "x".join(map(str, graph.values[node.output].shape))
        click.echo(f"{_clip(node.name, 32):<32s} {node.op:<16s} {shape:<18s} "
                   f"{node_param_count(node):>10d} {node_macs(graph, node):>12d}")
    totals = graph_totals(graph)
    click.echo(f"total: {len(graph.nodes)} nodes, {totals['params']} params, {totals['macs']} MACs per sample")
    click.echo("all ops are supported")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# --- run ---------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  snncc run model.onnx --input x.npy
  snncc run model.onnx --input x.npy --output y.npy
""")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path), metavar="FILE",
              help="A .npy array of inputs, N x C x H x W (or one sample without N); or a .npz "
                   "(its array x, else its only array).")
@click.option("--output", "output_path", type=click.Path(path_type=Path), metavar="FILE",
              help="Write the outputs to this .npy file (.npy is added when missing) instead of printing them.")
def run(model: Path, input_path: Path, output_path: Path | None):
    """Run the float reference runtime (numpy) on the model."""
    import snncc

    target = _npy_output_path(output_path) if output_path else None
    graph = snncc.load_onnx(model)
    x = _load_input(input_path)
    y = snncc.run(graph, x)
    if isinstance(y, list):
        raise SnnccError("the model has several outputs; `snncc run` supports one")
    if target is not None:
        _save_npy(target, y)
        click.echo(f"wrote {target} {list(y.shape)}")
    else:
        np.set_printoptions(precision=5, suppress=True, linewidth=120)
        click.echo(np.array2string(y))


def _load_input(path: Path) -> np.ndarray:
    from snncc.arrays import read_arrays

    arrays = read_arrays(path, "input")
    if "x" in arrays:
        return arrays["x"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise SnnccError(f": {path.name!r} holds arrays {sorted(arrays)}; name the inputs 'x'", option="input")


def _npy_output_path(path: Path) -> Path:
    """The file ``--output`` writes (numpy's rule: ``.npy`` is added when missing), checked before any work."""
    target = path if path.suffix.lower() == ".npy" else path.with_name(path.name + ".npy")
    if target.is_dir():
        raise SnnccError(f": {target} is a folder; give a file name", option="output_path")
    if not target.parent.is_dir():
        raise SnnccError(f": folder {str(target.parent)!r} does not exist", option="output_path")
    return target


def _save_npy(target: Path, y: np.ndarray) -> None:
    """Write through a temporary file in the same folder: never a half-written .npy."""
    import io

    from snncc.outdir import write_file_atomic

    buf = io.BytesIO()
    np.save(buf, y)
    write_file_atomic(target, buf.getvalue(), option="output_path")


# --- compile options shared by compile / verify ------------------------------------

def _target_flags(f):
    """The target flags compile and verify share (--event-driven, --nir-profile)."""
    f = click.option("--nir-profile", type=click.Choice(["multispike", "binary", "threshold"]),
                     default="multispike", show_default=True,
                     help="--target nir: IF nodes read as multi-spike neurons (Sinabs), binary IF with one "
                          "threshold per layer (snnTorch; --levels 1), or the exact T=1 Threshold-sum "
                          "expansion (docs/interop.md).")(f)
    return click.option("--event-driven", is_flag=True,
                        help="--target fpga: window cores skip zero input words (cycles then depend on the "
                             "data; verify reports them against the exact model).")(f)


def _compile_options(f):
    opts = [
        click.option("--calib", help="Calibration inputs: .npy or .npz (keys x[, y]), or 'random' "
                                     "(structure tests only). Default: [compile] calib in a sibling "
                                     "snncc.toml, else <model>.calib.npz."),
        click.option("--levels", "-N", type=int, default=None, help="Spike levels per neuron (default 4)."),
        click.option("--timesteps", "-T", type=int, default=None, help="Timesteps per inference (default 1)."),
        click.option("--threshold", default=None, help="Threshold method: max, percentile:P, mse (default mse)."),
        click.option("--threshold-granularity", type=click.Choice(["channel", "layer"]), default=None,
                     help="One threshold per channel (default) or per layer."),
        click.option("--threshold-search", type=click.Choice(["none", "output"]), default=None,
                     help="output (default): per layer, keep the thresholds that minimize the logits' "
                          "error against the ANN on calibration samples, each candidate simulated over all "
                          "T timesteps (slower as T grows); none: keep the threshold method's."),
        click.option("--threshold-refine", type=click.Choice(["none", "channel", "weights", "all"]), default=None,
                     help="Sequential calibration at T=1 (docs/conversion.md): channel: refine each "
                          "channel's threshold against the next layer's error; weights: refit each "
                          "conv/dense to its quantized input; all: both; none (default): neither."),
        click.option("--bias-correction/--no-bias-correction", default=None,
                     help="Shift biases by the mean quantization error (default on)."),
        click.option("--weight-bits", type=int, default=None, help="Weight bits, 2..8 (default 8)."),
        click.option("--layer-bits", multiple=True,
                     help="Per-layer weight bits, NAME=BITS (repeatable; 'first'/'last' allowed)."),
        click.option("--weight-quantizer", default=None, help="max, percentile, mse or rescaw (default mse)."),
        click.option("--weight-rounding", type=click.Choice(["auto", "gptq", "nearest"]), default=None,
                     help="Round weights data-aware (gptq), to nearest, or auto (default): gptq "
                          "up to 2M weights in the model, else nearest."),
        click.option("--step-search/--no-step-search", default=None,
                     help="With gptq rounding, search each channel's current step on the calibration "
                          "data (default on)."),
        click.option("--membrane-bits", type=int, default=None,
                     help="Membrane bit width B, 4..32 (default 16)."),
        click.option("--membrane-shift", type=int, default=None,
                     help="Stored membrane precision: keep the residual on a 2^k grid, k in 0..B-2 "
                          "(default 0)."),
        click.option("--residual", type=click.Choice(["sparse", "sew"]), default=None,
                     help="Residual joins: barrier neurons (sparse, default) or sum of levels (sew)."),
        click.option("--barrier-scale", type=float, default=None,
                     help="Scale the barrier neurons' thresholds by k (default 1.0)."),
        click.option("--input-scale", type=float, default=None, metavar="S",
                     help="The int8 input step: x_q = clamp(round(x / S), -128, 127). Default 0: "
                          "max|x| / 127 over the calibration data. S = 1 keeps integer inputs such as "
                          "event counts exact up to 127."),
        click.option("--prune", type=float, default=None, metavar="R",
                     help="Structured pruning: remove the fraction R (0 <= R < 1) of every prunable layer's "
                          "channel groups, least important first (default 0: none)."),
        click.option("--prune-layer", "prune_layers", multiple=True, metavar="NAME=R",
                     help="Per-layer pruning fraction (repeatable; a conv/dense layer name)."),
        click.option("--prune-criterion", type=click.Choice(list(PRUNE_CRITERIA)), default=None,
                     help="Channel importance: dead (exact removal of channels that are zero or constant on "
                          "the calibration data), l1 (default), svs (spike-map singular values), mp "
                          "(membrane potential)."),
        click.option("--prune-target-params", type=int, default=None, metavar="P",
                     help="Prune the globally least important channel groups until at most P parameters remain."),
        click.option("--prune-target-flash", type=int, default=None, metavar="BYTES",
                     help="Prune until the target's emitted constant bytes (C: c_memory.weight_bytes; other "
                          "targets: prune's estimate of weights, biases, thresholds) are at most BYTES."),
        click.option("--prune-multiple", type=int, default=None, metavar="K",
                     help="A pruned layer keeps a multiple of K channels (never fewer than K; removes fewer "
                          "than asked where needed). Default 1: no rounding; for the C target 4 or 8 keep "
                          "its kernels' vector paths (docs/pruning.md)."),
        click.option("--max-memory", default=None, metavar="SIZE",
                     help="Memory budget, e.g. 4G, 2G, 512M (default 4G): calibration and the "
                          "data-driven passes run in batches that fit it; a model whose single sample "
                          "cannot fit is refused, naming the layer."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="A TOML file of options (default: snncc.toml next to the model); "
                          "flags override it, --layer-bits and --prune-layer merge into its layer_bits and "
                          "prune_layers tables. See docs/cli.md."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _build_options(kw: dict, model: Path, default_calib: str | None = None):
    """CompileOptions from (lowest first) defaults, the TOML config, CLI flags; validated.

    The config is --config, else a ``snncc.toml`` next to the model.  Its
    ``[compile] calib`` key names the default calibration file, relative to it.
    --layer-bits and --prune-layer flags are merged into the file's ``layer_bits`` and
    ``prune_layers`` tables (a flag wins for the same name).  Returns the options and the calibration spec; where each
    value came from is kept for error messages (see :func:`remember_config`).
    """
    from snncc.config import find_config, open_config
    from snncc.options import CompileOptions

    options = CompileOptions()
    cfg = open_config(find_config(model, kw.pop("config_path", None)))
    for key, value in (cfg.overrides if cfg else {}).items():
        setattr(options, key, value)
    flag_layers = parse_layer_bits(kw.pop("layer_bits", ()))
    options.layer_bits.update(flag_layers)
    prune_layers = parse_prune_layers(kw.pop("prune_layers", ()))
    options.prune_layers = {**options.prune_layers, **prune_layers}
    calib = kw.pop("calib", None) or (cfg.calib if cfg else None)
    if calib is None:
        sibling = model.with_name(model.stem + ".calib.npz")
        if sibling.is_file():
            calib = str(sibling)
    if calib is None:
        calib = default_calib
    if calib is None:
        raise SnnccError("option --calib is required: give a .npy/.npz of input samples, or "
                         f"'--calib random' for structure tests only ({missing_calib_where(model, cfg)})")
    flags = {key for key, value in kw.items() if value is not None}
    for key in flags:
        setattr(options, key, kw[key])
    remember_config(cfg, flags | ({"prune_layers"} if prune_layers else set()), set(flag_layers))
    options.validate()
    return options, calib


def _target_options(target: str, *, lanes: int, nir_profile: str, simulator: str | None = None,
                    event_driven: bool = False) -> dict | None:
    """The options of ``target`` among the CLI's target options (the others keep their defaults)."""
    if target == "fpga":
        return {"lanes": lanes, "event_driven": event_driven,
                **({"simulator": simulator} if simulator is not None else {})}
    if target == "nir":
        return {"nir_profile": nir_profile}
    return None


# --- compile ---------------------------------------------------------------------

@cli.command(name="compile", epilog="""\b
Examples:
  snncc compile model.onnx --target c --calib calib.npz -o build/model
  snncc compile model.onnx --target python --calib calib.npz -o build/py -N 2 -T 4
  snncc compile model.onnx --target fpga --lanes 4 --calib calib.npz -o build/fpga
  snncc compile model.onnx --calib calib.npz --weight-bits 4 --layer-bits first=8 --layer-bits last=8 -o out
""")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", type=click.Choice(target_names()), default="c", show_default=True,
              help="What to emit.")
@click.option("--lanes", type=int, default=1, show_default=True, metavar="P",
              help="--target fpga: output channels computed in parallel per core (clamped per layer to a "
                   "divisor of its channels per group, with a note).")
@_target_flags
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default build/<model name>).")
@click.option("--force", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--name", help="C identifier prefix of the generated API (default: from the file name).")
@click.option("--dump-ir-after", multiple=True, metavar="PASS", help="Print the IR after this pass (repeatable).")
@click.option("--stop-after", metavar="PASS",
              help="End the pipeline after this pass and write only its IR (<name>.json + <name>.npz) to -o.")
@click.option("--start-from", metavar="IR", type=click.Path(path_type=Path),
              help="Resume from an IR written by --stop-after (the path without .json/.npz); MODEL stays "
                   "the float reference of the report.")
@click.option("--report", "report_format", type=click.Choice(["text", "html", "none"]), default="text",
              show_default=True, help="Print a text summary, also write report.html, or stay quiet.")
@click.option("--finetune-epochs", type=int, default=None, metavar="E",
              help="Fine-tune the integer SNN for E epochs on --finetune-data before emitting it "
                   "(needs torch, the train extra; docs/finetune.md).")
@click.option("--finetune-data", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Labelled training data for --finetune-epochs: .npz with x and y.")
@_compile_options
def compile_cmd(model: Path, target: str, lanes: int, event_driven: bool, nir_profile: str, output: Path | None,
                force: bool,
                name: str | None, dump_ir_after: tuple[str, ...], report_format: str, stop_after: str | None,
                start_from: Path | None, finetune_epochs: int | None, finetune_data: Path | None, **kw):
    """Compile MODEL into an integer spiking network for TARGET, with report.json."""
    from snncc.compiler import c_safe_name, compile_model

    options, calib = _build_options(kw, model)
    tune = _finetune_on_compile(model, finetune_epochs, finetune_data, stop_after)
    output = output or Path("build") / c_safe_name(model.stem)
    result = compile_model(model, options=options, calib=calib, target=target, output=output, force=force,
                           finetune=tune,
                           name=name, dump_after=dump_ir_after, echo=click.echo, stop_after=stop_after,
                           start_from=start_from,
                           target_options=_target_options(target, lanes=lanes, nir_profile=nir_profile,
                                                          event_driven=event_driven),
                           inputs=[p for p in [config_in_use(), finetune_data] if p is not None])
    if stop_after is not None:
        click.echo(f"wrote {output}/ (IR after {stop_after})")
        return
    if report_format == "html":
        from snncc.html_report import write_html_report

        write_html_report(result.report, output / "report.html")
    if report_format != "none":
        from snncc.text_report import format_summary

        click.echo(format_summary(result.report))
    click.echo(f"wrote {output}/")


def _finetune_on_compile(model: Path, epochs: int | None, data: Path | None, stop_after: str | None):
    """compile --finetune-epochs/--finetune-data: the fine-tune request, checked before any slow work."""
    if epochs is None and data is None:
        return None
    if epochs is None or data is None:
        missing, given = ("--finetune-data", "--finetune-epochs") if data is None else ("--finetune-epochs",
                                                                                       "--finetune-data")
        raise SnnccError(f"option {missing} is required with {given}")
    if stop_after is not None:
        raise SnnccError(": fine-tuning needs the integer SNN; drop --stop-after or --finetune-epochs",
                         option="finetune_epochs")
    from snncc.finetune.run import Request

    return Request(data=data, epochs=epochs, option="finetune_data", epochs_option="finetune_epochs")


# --- finetune ----------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  snncc finetune model.onnx --data train.npz --val val.npz --epochs 10 -N 2 -o tuned.onnx
  snncc finetune model.onnx --data train.npz --epochs 20 --weight-bits 2 --layer-bits first=8 \\
      --layer-bits last=8 --distill -o tuned.onnx
  snncc compile tuned.onnx --calib train.npz -N 2 -o build/tuned     # the same options
""")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True, metavar="FILE",
              help="Labelled training data: .npz with inputs x (N x C x H x W) and integer labels y.")
@click.option("--val", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Labelled validation data (.npz x, y): its accuracy is printed per epoch and the best "
                   "epoch is kept.")
@click.option("--epochs", type=int, required=True, metavar="E", help="Epochs of fine-tuning (>= 1).")
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Adam's learning rate (cosine decay).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Samples per step.")
@click.option("--distill", is_flag=True,
              help="Also learn from the float ANN's logits as soft targets (knowledge distillation).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch threads (the twin's ops are small: on a busy machine more threads mostly wait).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The tuned model: an .onnx file (the ANN, with the fine-tuned integers in its metadata).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@_compile_options
def finetune(model: Path, data: Path, val: Path | None, epochs: int, lr: float, batch_size: int, distill: bool,
             threads: int, output: Path, force: bool, **kw):
    """Fine-tune MODEL's integer SNN on labelled data; write the tuned ONNX (docs/finetune.md).

    Every compile option applies: the network fine-tuned is the one `snncc compile` builds with
    them, and `snncc compile OUTPUT` with the same options and calibration data gives the tuned
    integer SNN back. The calibration data defaults to --calib, the config's, then <model>.calib.npz next to
    the model, then --data.
    """
    from snncc.finetune.command import finetune_model
    from snncc.finetune.run import Request

    if output.exists() and not force:
        raise SnnccError(f": {output} exists (use --force to replace it)", option="output")
    options, calib = _build_options(kw, model, default_calib=str(data))
    req = Request(data=data, epochs=epochs, val=val, lr=lr, batch=batch_size, distill=distill, threads=threads)
    _, out = finetune_model(model, output, req, options=options, calib=calib, echo=click.echo)
    line = f"integer SNN accuracy on --data {100 * out.before['train']:.2f}% -> {100 * out.after['train']:.2f}%"
    if "val" in out.after:
        line += f"; on --val {100 * out.before['val']:.2f}% -> {100 * out.after['val']:.2f}%"
    click.echo(line + f" ({out.seconds:.1f} s)")
    click.echo(f"wrote {output} (compile it with the same options and --calib {calib})")


# --- verify ------------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  snncc verify model.onnx --target c --calib calib.npz --data test.npz
  snncc verify model.onnx --target python --calib calib.npz --data test.npz --max-top1-drop 1.0
  snncc verify model.onnx --target fpga --lanes 16 --calib calib.npz --data test.npz
""")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", type=click.Choice(target_names()), default="c", show_default=True,
              help="The code to check bit for bit against the integer runtime.")
@click.option("--lanes", type=int, default=1, show_default=True, metavar="P",
              help="--target fpga: output channels computed in parallel per core.")
@_target_flags
@click.option("--simulator", type=click.Choice(["auto", "iverilog", "verilator"]), default="auto",
              show_default=True, help="--target fpga: Verilog simulator (auto: iverilog for short runs, "
                                      "Verilator when present for long ones).")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path),
              help="Evaluation inputs: .npy or .npz (keys x[, y]), like --calib. The ladder and the "
                   "accuracy run on them. Default: the calibration data (optimistic accuracy).")
@click.option("--max-top1-drop", type=float, default=None, metavar="P",
              help="Fail if SNN top-1 accuracy (or agreement, without labels) drops more than P points. "
                   "Default: no budget (equivalence only; a drop over 1 point warns).")
@click.option("--cc", default="cc", show_default=True, help="Host C compiler for --target c.")
@ray_options("run the per-sample rungs (integer runtime, the target's code) on shards of the data, with "
             "the same counts as a local run,")
@_compile_options
def verify(model: Path, target: str, lanes: int, event_driven: bool, nir_profile: str, simulator: str,
           data: Path | None,
           max_top1_drop: float | None, cc: str, executor: str, ray_address: str | None,
           ray_runtime_env: str | None, **kw):
    """Run the verification ladder on MODEL and exit non-zero on any break."""
    from snncc.verify import run_verify

    runtime_env = check_ray_options(executor, ray_address, ray_runtime_env)
    options, calib = _build_options(kw, model)
    ok = run_verify(model, options=options, calib=calib, target=target, max_top1_drop=max_top1_drop,
                    cc=cc, data=data, echo=click.echo, warn=lambda msg: click.echo(msg, err=True),
                    target_options=_target_options(target, lanes=lanes, simulator=simulator,
                                                   nir_profile=nir_profile, event_driven=event_driven),
                    executor=executor, ray_address=ray_address, ray_runtime_env=runtime_env,
                    note=lambda msg: click.echo(msg, err=True))
    if not ok:
        click.get_current_context().exit(1)


# --- synth ----------------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  snncc synth build/fpga --family ice40
  snncc synth build/fpga --family xc7
""")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--family", type=click.Choice(["ice40", "ecp5", "xc7"]), default="ice40", show_default=True,
              help="FPGA family: yosys synth_ice40, synth_ecp5 -nodsp, or synth_xilinx -family xc7.")
def synth(folder: Path, family: str):
    """Synthesize a --target fpga FOLDER with yosys; write FOLDER/synth_report.json."""
    from snncc.backends.fpga.synth import synthesize

    rep = synthesize(folder, family)
    t, e = rep["total"], rep["estimate"]
    click.echo(f"{family}: LUT {t['lut']}, FF {t['ff']}, BRAM {t['bram']}, DSP {t['dsp']} (yosys); "
               f"estimate LUT {e['lut']}, FF {e['ff']}, BRAM {e['bram']}, DSP {e['dsp']}; no latches, "
               "no multi-driven nets")
    click.echo(f"wrote {folder}/synth_report.json")


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {' '.join(str(message).split())}", err=True)


def main() -> None:
    import warnings

    from snncc.signals import Interrupted, handle_signals

    warnings.showwarning = _one_line_warning
    handle_signals()
    try:
        cli.main(prog_name="snncc", standalone_mode=True)
    except Interrupted as exc:  # the clean-up ran on the way out (see snncc.signals)
        click.echo(f"error: interrupted by {exc.name}; {exc.kept or 'no partial output left'}", err=True)
        sys.exit(128 + exc.signum)


def _register_extra_commands() -> None:  # report / sweep live in their own modules
    from snncc.cli_report import report_cmd
    from snncc.cli_sweep import sweep_cmd

    cli.add_command(report_cmd)
    cli.add_command(sweep_cmd)


_register_extra_commands()
