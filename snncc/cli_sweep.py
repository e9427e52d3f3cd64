"""`snncc sweep`: compile a grid of (levels, weight bits, timesteps) and show the Pareto front."""

from __future__ import annotations

from pathlib import Path

import click

from snncc.errors import SnnccError


@click.command(name="sweep", epilog="""\b
Examples:
  snncc sweep model.onnx --calib calib.npz --levels 1,2,4,8 --weight-bits 2,4,8 --timesteps 1,2,4
  snncc sweep model.onnx --calib calib.npz --levels 2,4 --weight-bits 4,8 --jobs 2 -o build/sweep
  snncc sweep model.onnx --calib calib.npz --weight-bits 2,4 --layer-bits first=8 --layer-bits last=8

\b
Writes sweep.csv, sweep_table.txt and sweep_pareto.png (accuracy against model bits
and against energy, front marked) into the output folder.
""")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--calib", help="Calibration inputs: .npy or .npz (keys x[, y]); with labels y the table shows "
                              "accuracy, else ANN/SNN agreement. Default: as for `snncc compile`.")
@click.option("--levels", "-N", default="1,2,4,8", show_default=True, help="Spike levels to try (comma list).")
@click.option("--weight-bits", default="2,4,8", show_default=True, help="Weight bits to try (comma list).")
@click.option("--timesteps", "-T", default="1", show_default=True, help="Timesteps to try (comma list).")
@click.option("--jobs", "-j", type=int, default=None, help="Worker processes (default: CPU count).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default build/sweep_<model name>).")
@click.option("--force", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--threshold", default=None, help="Threshold method for every point: max, percentile:P, mse.")
@click.option("--weight-quantizer", default=None, help="Weight quantizer for every point: max, percentile, mse, "
                                                        "rescaw.")
@click.option("--layer-bits", multiple=True, help="Per-layer weight bits kept fixed across the sweep, NAME=BITS "
                                                  "(repeatable; 'first'/'last' allowed).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A TOML file of options shared by every point (default: snncc.toml next to the model); "
                   "the grid and flags override it, --layer-bits merges into its layer_bits table.")
def sweep_cmd(model: Path, calib: str | None, levels: str, weight_bits: str, timesteps: str, jobs: int | None,
              output: Path | None, force: bool, threshold: str | None, weight_quantizer: str | None,
              layer_bits: tuple[str, ...], config_path: Path | None):
    """Compile MODEL over a grid of N, weight bits and T; table, CSV and Pareto plot.

    Each point runs the full conversion and quantization (no code emission) in a worker
    process and is scored on the calibration data: SNN accuracy (or ANN/SNN agreement
    without labels), model size in bits and the SNN energy estimate.
    """
    from snncc.cli_options import missing_calib_where, parse_layer_bits, remember_config
    from snncc.compiler import c_safe_name
    from snncc.config import find_config, open_config
    from snncc.sweep import format_table, parse_int_list, run_sweep

    if not model.is_file():
        raise SnnccError(f"argument MODEL: file not found: {model}")
    cfg = open_config(find_config(model, config_path))
    base = dict(cfg.overrides) if cfg else {}
    calib = calib or (cfg.calib if cfg else None)
    if calib is None and model.with_name(model.stem + ".calib.npz").is_file():
        calib = str(model.with_name(model.stem + ".calib.npz"))
    if calib is None:
        raise SnnccError(f"option --calib is required ({missing_calib_where(model, cfg)})")
    if jobs is not None and jobs < 1:
        raise SnnccError(f"must be >= 1, got {jobs}", option="jobs")
    grid = {"levels": parse_int_list(levels, "--levels"), "weight_bits": parse_int_list(weight_bits, "--weight-bits"),
            "timesteps": parse_int_list(timesteps, "--timesteps")}
    if threshold is not None:
        base["threshold"] = threshold
    if weight_quantizer is not None:
        base["weight_quantizer"] = weight_quantizer
    flag_layers = parse_layer_bits(layer_bits)
    if flag_layers:
        base["layer_bits"] = {**base.get("layer_bits", {}), **flag_layers}
    flags = {*grid, *(["threshold"] if threshold else []), *(["weight_quantizer"] if weight_quantizer else [])}
    output = output or Path("build") / f"sweep_{c_safe_name(model.stem)}"
    remember_config(cfg, flags, set(flag_layers))
    rows = run_sweep(model, calib, grid, jobs, output, base_options=base, force=force, echo=click.echo,
                     protect=[model, calib, config_path])
    click.echo(format_table(rows))
    click.echo(f"wrote {output}/sweep.csv, sweep_table.txt, sweep_pareto.png")
