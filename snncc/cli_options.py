"""Option helpers shared by the commands in cli.py and cli_sweep.py (kept apart so that
neither command module imports the other)."""

from __future__ import annotations

from pathlib import Path

import click

from snncc.errors import SnnccError


def missing_calib_where(model: Path, cfg) -> str:
    """Where snncc looked for a default --calib, for the 'option --calib is required' error."""
    toml = f"{cfg.path} has no [compile] calib" if cfg else "no snncc.toml next to the model"
    return f"{toml}, and there is no {model.stem}.calib.npz next to the model"


def parse_layer_table(items, option: str, value: str, kind, noun: str, want: str) -> dict:
    """Repeated NAME=VALUE flags -> {name: kind(value)}; SnnccError naming ``option`` and the name."""
    out: dict = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise SnnccError(f"expects NAME={value}, got {item!r}", option=option)
        try:
            out[name] = kind(raw)
        except ValueError:
            raise SnnccError(f"{name}: {noun} must be {want}, got {raw!r}", option=option, key=name) from None
    return out


def config_in_use() -> Path | None:
    """The config file the current command read (see :func:`remember_config`), if any."""
    ctx = click.get_current_context(silent=True)
    source = ctx.meta.get("snncc.config") if ctx is not None else None
    return source.config.path if source is not None and source.config is not None else None


def parse_layer_bits(items) -> dict[str, int]:
    return parse_layer_table(items, "layer_bits", "BITS", int, "bits", "an integer")


def parse_prune_layers(items) -> dict[str, float]:
    """--prune-layer NAME=R flags -> {name: ratio} (the range is checked by CompileOptions.validate)."""
    return parse_layer_table(items, "prune_layers", "R", float, "R", "a number in [0, 1)")


def remember_config(cfg, flags: set[str], flag_layers: set[str]):
    """Record where the options came from: an error caused by a config-file value then
    names the file and key (the CLI root reads this, see ``cli._Group.invoke``).  Returns
    the ``ConfigSource``, for errors that come back from workers (sweep)."""
    from snncc.config import ConfigSource

    source = ConfigSource(cfg, flags, flag_layers)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta["snncc.config"] = source
    return source


def ray_options(what: str):
    """--executor, --ray-address and --ray-runtime-env (sweep and verify; docs/scale-out.md)."""
    def decorate(f):
        opts = [
            click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                         help=f"ray: {what} as Ray tasks (pip install 'snncc[ray]'; docs/scale-out.md)."),
            click.option("--ray-address", default=None, metavar="ADDR",
                         help="--executor ray: the cluster (host:port); default $RAY_ADDRESS, else a local "
                              "cluster started for this run."),
            click.option("--ray-runtime-env", default=None, metavar="JSON",
                         help="--executor ray: the Ray runtime environment of the tasks, e.g. "
                              "'{\"pip\": [\"snncc\"]}' where the cluster's nodes lack snncc."),
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f
    return decorate


def check_ray_options(executor: str, address: str | None, runtime_env: str | None) -> dict | None:
    """Fail early: Ray options without --executor ray, Ray not installed, a runtime env that is not
    a JSON object. Returns the runtime env."""
    import json

    if executor != "ray":
        for option, value in (("ray_address", address), ("ray_runtime_env", runtime_env)):
            if value is not None:
                raise SnnccError("needs --executor ray", option=option)
        return None
    from snncc.cluster import require_ray

    require_ray()
    if runtime_env is None:
        return None
    try:
        env = json.loads(runtime_env)
    except ValueError as exc:
        raise SnnccError(f"is not JSON: {exc}", option="ray_runtime_env") from None
    if not isinstance(env, dict):
        raise SnnccError(f"must be a JSON object, got {runtime_env!r}", option="ray_runtime_env")
    return env
