"""Option helpers shared by the commands in cli.py and cli_sweep.py (kept apart so that
neither command module imports the other)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

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
            raise SnnccError(f"option --layer-bits expects NAME=BITS, got {item!r}")
        try:
            out[name] = int(bits)
        except ValueError:
            raise SnnccError(f"option --layer-bits {name}: bits must be an integer, got {bits!r}") from None
    return out


@contextmanager
def config_blame(cfg, flags: set[str], flag_layers: set[str]):
    """Re-raise an SnnccError caused by a config-file value so that it names the file and key."""
    from snncc.config import blame_config

    try:
        yield
    except SnnccError as exc:
        better = blame_config(exc, cfg, flags, flag_layers)
        if better is exc:
            raise
        raise better from None
