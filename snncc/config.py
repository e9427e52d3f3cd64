"""TOML compile configuration (``snncc compile --config snncc.toml``).

Example::

    [quantize]
    weight_bits = 4
    weight_quantizer = "mse"
    membrane_bits = 16

    [quantize.layer_bits]
    first = 8
    last = 8
    "layer1.0.conv1" = 6

Keys are :class:`~snncc.options.CompileOptions` field names.  They may sit at the top
level or in a section named after the pass they tune (``[calibrate]``, ``[convert]``,
``[residual]``, ``[prune]``, ``[quantize]``, ``[compile]``); any field is accepted in
any section.  ``layer_bits`` is a table of layer name -> bits.  ``[compile] calib``
names the default calibration file, relative to the config file
(``pop_compile_calib``).  ``load_config`` returns the option overrides as a dict;
the caller merges them under explicit CLI flags and runs
``CompileOptions.validate()``.  ``find_config`` / ``open_config`` do the CLI's part:
which file, its overrides, and where each came from, so that ``describe_error`` can name
the file and key when a value from it is refused later (by ``validate`` or a pass): the
error says which option it is about (``SnnccError.option``), never by its text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from snncc.errors import SnnccError
from snncc.options import CompileOptions

SECTIONS = ("compile", "calibrate", "residual", "convert", "prune", "quantize")


def load_config(path) -> dict:
    """Option overrides from a TOML file; SnnccError naming the key on any bad entry."""
    doc = read_toml(path)
    pop_compile_calib(doc, path)
    return config_overrides(doc, str(path))


def option_fields() -> list[dataclasses.Field]:
    """The CompileOptions fields a config file may set: plain values."""
    defaults = CompileOptions()
    return [f for f in dataclasses.fields(CompileOptions)
            if isinstance(getattr(defaults, f.name), (bool, int, float, str, dict))]


def config_overrides(doc: dict, where: str = "config", labels: dict | None = None) -> dict:
    """Validate a parsed TOML document and flatten it to CompileOptions overrides.

    ``labels``, when given, receives each option's key as written in the file
    (``"quantize.weight_bits"``), for error messages.
    """
    defaults = CompileOptions()
    fields = {f.name: f for f in option_fields()}
    out: dict = {}

    def put(key: str, value, label: str) -> None:
        if key not in fields:
            raise SnnccError(f"option --config: unknown key {label!r} in {where}; "
                             f"known keys: {', '.join(sorted(fields))}")
        if key in out:
            raise SnnccError(f"option --config: key {label!r} is given twice in {where}")
        out[key] = _typed(key, value, getattr(defaults, key), label, where)
        if labels is not None:
            labels[key] = label

    for key, value in doc.items():
        if key in SECTIONS and isinstance(value, dict):
            for sub, v in value.items():
                put(sub, v, f"{key}.{sub}")
        elif isinstance(value, dict) and key not in ("layer_bits", "prune_layers"):
            raise SnnccError(f"option --config: unknown section [{key}] in {where}; "
                             f"known sections: {', '.join(SECTIONS)}")
        else:
            put(key, value, key)
    return out


def _typed(key: str, value, default, label: str, where: str):
    def bad(want: str):
        return SnnccError(f"option --config: key {label!r} in {where} must be {want}, got {value!r}")

    if isinstance(default, dict) and key == "prune_layers":
        if not isinstance(value, dict):
            raise bad("a table of layer name = fraction")
        for name, r in value.items():
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r < 1:
                raise SnnccError(f"option --config: key '{label}.{name}' in {where} must be a fraction "
                                 f"in [0, 1), got {r!r}")
        return {name: float(r) for name, r in value.items()}
    if isinstance(default, dict):  # layer_bits
        if not isinstance(value, dict):
            raise bad("a table of layer name = bits")
        for name, bits in value.items():
            if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
                raise SnnccError(f"option --config: key '{label}.{name}' in {where} must be an integer "
                                 f"in 2..8, got {bits!r}")
        return dict(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    return value


def read_toml(path) -> dict:
    """Parse a TOML file; SnnccError naming --config when unreadable or invalid."""
    import tomllib

    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise SnnccError(f"option --config: cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise SnnccError(f"option --config: {path} is not UTF-8 text (TOML files are UTF-8)") from None
    except tomllib.TOMLDecodeError as e:
        raise SnnccError(f"option --config: {path} is not valid TOML: {e}") from None


def pop_compile_calib(doc: dict, path) -> str | None:
    """Remove and resolve ``[compile] calib`` (a default for --calib, relative to the file)."""
    calib = doc.get("compile", {}).pop("calib", None)
    if calib is None:
        return None
    if not isinstance(calib, str):
        raise SnnccError(f"option --config: key 'compile.calib' in {path} must be a path string")
    return calib if calib == "random" else str((Path(path).parent / calib).resolve())


def read_compile_calib(path) -> str | None:
    return pop_compile_calib(read_toml(path), path)


@dataclass
class ConfigFile:
    """A config file as the CLI uses it."""

    path: Path
    overrides: dict  # CompileOptions field -> value
    labels: dict[str, str] = field(default_factory=dict)  # field -> key as written, e.g. "quantize.layer_bits"
    calib: str | None = None  # [compile] calib, resolved against the file's folder


def find_config(model: Path, explicit: Path | None) -> Path | None:
    """--config, else a ``snncc.toml`` next to the model, else None."""
    if explicit is not None:
        return Path(explicit)
    sibling = Path(model).parent / "snncc.toml"
    return sibling if sibling.is_file() else None


def open_config(path: Path | None) -> ConfigFile | None:
    if path is None:
        return None
    doc = read_toml(path)
    calib = pop_compile_calib(doc, path)
    labels: dict[str, str] = {}
    overrides = config_overrides(doc, str(path), labels)
    return ConfigFile(Path(path), overrides, labels, calib)


def describe_error(exc: SnnccError, source: ConfigSource | None) -> str:
    """The error's one line; when a value from the config file caused it (``exc.option``
    is a key the file set and no flag overrode), it names the file and the key."""
    if source is None or source.config is None or exc.option not in source.config.labels:
        return str(exc)
    cfg, label = source.config, source.config.labels[exc.option]
    if exc.option in ("layer_bits", "prune_layers"):
        table = cfg.overrides[exc.option]
        if exc.key is None or exc.option in source.flags or exc.key in source.flag_layers or exc.key not in table:
            return str(exc)
        label = f"{label}.{exc.key}"
    elif exc.option in source.flags:
        return str(exc)
    return f"option --config: key {label!r} in {cfg.path}: {exc.body.lstrip(' :')}"


@dataclass
class ConfigSource:
    """Where the options of one command came from: the config file, and what flags overrode."""

    config: ConfigFile | None
    flags: set[str] = field(default_factory=set)  # CompileOptions fields given as flags
    flag_layers: set[str] = field(default_factory=set)  # layer names given with --layer-bits
