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


def parse_layer_bits(items) -> dict[str, int]:
    return parse_layer_table(items, "layer_bits", "BITS", int, "bits", "an integer")


def parse_prune_layers(items) -> dict[str, float]:
    """--prune-layer NAME=R flags -> {name: ratio} (the range is checked by CompileOptions.validate)."""
    return parse_layer_table(items, "prune_layers", "R", float, "R", "a number in [0, 1)")


def remember_config(cfg, flags: set[str], flag_layers: set[str]) -> None:
    """Record where the options came from: an error caused by a config-file value then
    names the file and key (the CLI root reads this, see ``cli._Group.invoke``)."""
    from snncc.config import ConfigSource

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta["snncc.config"] = ConfigSource(cfg, flags, flag_layers)
