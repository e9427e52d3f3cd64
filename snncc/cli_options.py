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


def parse_layer_bits(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, sep, bits = item.partition("=")
        if not sep or not name:
            raise SnnccError(f"expects NAME=BITS, got {item!r}", option="layer_bits")
        try:
            out[name] = int(bits)
        except ValueError:
            raise SnnccError(f"{name}: bits must be an integer, got {bits!r}", option="layer_bits",
                             key=name) from None
    return out


def parse_prune_layers(items) -> dict[str, float]:
    """--prune-layer NAME=R flags -> {name: ratio} (the range is checked by CompileOptions.validate)."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, ratio = item.partition("=")
        if not sep or not name:
            raise SnnccError(f"expects NAME=R, got {item!r}", option="prune_layers")
        try:
            out[name] = float(ratio)
        except ValueError:
            raise SnnccError(f"{name}: R must be a number in [0, 1), got {ratio!r}", option="prune_layers",
                             key=name) from None
    return out


def remember_config(cfg, flags: set[str], flag_layers: set[str]) -> None:
    """Record where the options came from: an error caused by a config-file value then
    names the file and key (the CLI root reads this, see ``cli._Group.invoke``)."""
    from snncc.config import ConfigSource

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta["snncc.config"] = ConfigSource(cfg, flags, flag_layers)
