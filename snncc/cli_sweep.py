"""`snncc sweep`: compile a grid of (levels, weight bits, timesteps) and show the Pareto front."""

from __future__ import annotations

from pathlib import Path

import click

from snncc.cli_options import ray_options
from snncc.errors import SnnccError


def _axis_options(f):
    """One comma-list flag per sweep axis (snncc.sweep_grid.AXES): a new axis gets its flag there."""
    from snncc.sweep_grid import AXES

    shorts = {"levels": "-N", "timesteps": "-T"}
    for axis in reversed(AXES):
        flag = "--" + axis.name.replace("_", "-")
        default = f" [default without --grid: {axis.default}]" if axis.default else " (default: the compile option)"
        f = click.option(flag, *([shorts[axis.name]] if axis.name in shorts else []), axis.name, default=None,
                         metavar="LIST", help=f"{axis.help} to try (comma list){default}.")(f)
    return f


@click.command(name="sweep", epilog="""\b
Examples:
  snncc sweep model.onnx --calib calib.npz --levels 1,2,4,8 --weight-bits 2,4,8 --timesteps 1,2,4
  snncc sweep model.onnx --calib calib.npz --levels 2,4 --weight-bits 4,8 --jobs 2 -o build/sweep
  snncc sweep model.onnx --calib calib.npz --weight-bits 2,4 --weight-quantizer mse,rescaw --residual sparse,sew
  snncc sweep model.onnx --calib calib.npz --grid grid.toml --executor ray --ray-address 10.0.0.5:6379 -o out
  snncc sweep model.onnx --calib calib.npz --grid grid.toml -o out --resume

\b
Writes sweep.csv (a row appended as each point finishes), sweep_table.txt and
sweep_pareto.png (accuracy against model bits and against energy, front marked)
into the output folder. docs/scale-out.md: Ray clusters.
""")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--calib", help="Calibration inputs: .npy or .npz (keys x[, y]); with labels y the table shows "
                              "accuracy, else ANN/SNN agreement. Default: as for `snncc compile`.")
@_axis_options
@click.option("--grid", "grid_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A TOML file of points: an [axes] table of lists (their cartesian product) and/or "
                   "[[point]] tables; axis flags add to its [axes].")
@ray_options("one task per point (local: worker processes on this machine)")
@click.option("--jobs", "-j", type=int, default=None,
              help="Worker processes (default: CPU count); with --executor ray, the CPUs of a local cluster.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default build/sweep_<model name>).")
@click.option("--force", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--resume", is_flag=True, help="Keep the points already in the output folder's sweep.csv and run "
                                             "only the rest (and any whose worker died).")
@click.option("--reports", is_flag=True, help="Also write each point's report.json into <output>/reports/.")
@click.option("--threshold", default=None, help="Threshold method for every point: max, percentile:P, mse.")
@click.option("--layer-bits", multiple=True, help="Per-layer weight bits kept fixed across the sweep, NAME=BITS "
                                                  "(repeatable; 'first'/'last' allowed).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A TOML file of options shared by every point (default: snncc.toml next to the model); "
                   "the grid and flags override it, --layer-bits merges into its layer_bits table.")
def sweep_cmd(model: Path, calib: str | None, grid_path: Path | None, executor: str, ray_address: str | None,
              ray_runtime_env: str | None, jobs: int | None, output: Path | None, force: bool, resume: bool,
              reports: bool, threshold: str | None, layer_bits: tuple[str, ...], config_path: Path | None, **axes):
    """Compile MODEL over a grid of N, weight bits, T, quantizers...; table, CSV and Pareto plot.

    Each point runs the full conversion and quantization (no code emission) in a worker
    process or a Ray task and is scored on the calibration data: SNN accuracy (or ANN/SNN
    agreement without labels), model size in bits and the SNN energy estimate.
    """
    from snncc.cli_options import check_ray_options, missing_calib_where, parse_layer_bits, remember_config
    from snncc.compiler import c_safe_name
    from snncc.config import find_config, open_config
    from snncc.sweep import AXIS, format_table, parse_list, read_grid, run_sweep

    if not model.is_file():
        raise SnnccError(f"argument MODEL: file not found: {model}")
    runtime_env = check_ray_options(executor, ray_address, ray_runtime_env)
    cfg = open_config(find_config(model, config_path))
    base = dict(cfg.overrides) if cfg else {}
    calib = calib or (cfg.calib if cfg else None)
    if calib is None and model.with_name(model.stem + ".calib.npz").is_file():
        calib = str(model.with_name(model.stem + ".calib.npz"))
    if calib is None:
        raise SnnccError(f"option --calib is required ({missing_calib_where(model, cfg)})")
    if jobs is not None and jobs < 1:
        raise SnnccError(f"must be >= 1, got {jobs}", option="jobs")
    grid, points = read_grid(grid_path) if grid_path is not None else ({}, [])
    grid = dict(grid)
    for key, text in axes.items():
        if text is None and grid_path is None and AXIS[key].default:
            text = AXIS[key].default
        if text is not None:
            grid[key] = parse_list(text, "--" + key.replace("_", "-"), AXIS[key].kind)
    if threshold is not None:
        base["threshold"] = threshold
    flag_layers = parse_layer_bits(layer_bits)
    if flag_layers:
        base["layer_bits"] = {**base.get("layer_bits", {}), **flag_layers}
    flags = {*(k for k, v in axes.items() if v is not None), *(["threshold"] if threshold else [])}
    output = output or Path("build") / f"sweep_{c_safe_name(model.stem)}"
    source = remember_config(cfg, flags | set(grid), set(flag_layers))
    rows = run_sweep(model, calib, grid, jobs, output, base_options=base, force=force, points=points,
                     echo=click.echo, protect=[model, calib, config_path, grid_path], executor=executor,
                     ray_address=ray_address, ray_runtime_env=runtime_env, resume=resume, reports=reports,
                     config_source=source)
    click.echo(format_table(rows))
    click.echo(f"wrote {output}/sweep.csv, sweep_table.txt, sweep_pareto.png" + (", reports/" if reports else ""))
