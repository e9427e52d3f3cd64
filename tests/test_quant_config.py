"""TOML config (snncc/config.py) for the quantize options and per-layer bits."""

import numpy as np
import pytest
from quant_graphs import tiny_snn

from snncc.config import load_config
from snncc.errors import SnnccError
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import quantize


def _write(tmp_path, text):
    p = tmp_path / "snncc.toml"
    p.write_text(text)
    return p


def test_sections_and_layer_bits(tmp_path):
    p = _write(tmp_path, """
levels = 2
[quantize]
weight_bits = 4
weight_quantizer = "rescaw"
membrane_bits = 12
[quantize.layer_bits]
first = 8
"layer1.0.conv2" = 3
[convert]
timesteps = 2
barrier_scale = 1
""")
    cfg = load_config(p)
    assert cfg == {"levels": 2, "weight_bits": 4, "weight_quantizer": "rescaw", "membrane_bits": 12,
                   "layer_bits": {"first": 8, "layer1.0.conv2": 3}, "timesteps": 2, "barrier_scale": 1.0}
    opts = CompileOptions(**{k: v for k, v in cfg.items() if k not in ("levels", "timesteps")}).validate()
    gi = quantize.run(tiny_snn(), PassContext(opts))
    assert [gi.node(n).attrs["bits"] for n in ("conv1", "conv2", "fc")] == [8, 3, 4]


@pytest.mark.parametrize("text,match", [
    ("[quantize]\nweight_bitz = 4\n", r"unknown key 'quantize.weight_bitz'"),
    ("[quantise]\nweight_bits = 4\n", r"unknown section \[quantise\]"),
    ("[quantize]\nweight_bits = '4'\n", r"'quantize.weight_bits'.*must be an integer"),
    ("[quantize.layer_bits]\nconv1 = 9\n", r"'quantize.layer_bits.conv1'.*2..8"),
    ("[quantize]\nlayer_bits = 8\n", r"'quantize.layer_bits'.*table"),
    ("weight_bits = 4\n[quantize]\nweight_bits = 5\n", r"'quantize.weight_bits' is given twice"),
    ("calib_data = 1\n", r"unknown key 'calib_data'"),
    ("[quantize\n", r"not valid TOML"),
])
def test_bad_config(tmp_path, text, match):
    with pytest.raises(SnnccError, match=match):
        load_config(_write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(SnnccError, match="--config: cannot read"):
        load_config(tmp_path / "nope.toml")


def test_compile_calib_is_resolved_not_an_option(tmp_path):
    from snncc.config import config_overrides, pop_compile_calib, read_toml

    p = _write(tmp_path, '[compile]\ncalib = "data/c.npz"\nweight_bits = 6\n')
    assert load_config(p) == {"weight_bits": 6}
    doc = read_toml(p)
    assert pop_compile_calib(doc, p) == str((tmp_path / "data" / "c.npz").resolve())
    assert config_overrides(doc) == {"weight_bits": 6}
    assert pop_compile_calib({}, p) is None


def test_open_config_records_where_each_key_came_from(tmp_path):
    from snncc.config import open_config

    p = _write(tmp_path, 'seed = 3\n[compile]\ncalib = "c.npz"\n[quantize]\nweight_bits = 4\n'
                         '[quantize.layer_bits]\nfirst = 8\n')
    cfg = open_config(p)
    assert cfg.overrides == {"seed": 3, "weight_bits": 4, "layer_bits": {"first": 8}}
    assert cfg.labels == {"seed": "seed", "weight_bits": "quantize.weight_bits", "layer_bits": "quantize.layer_bits"}
    assert cfg.calib == str((tmp_path / "c.npz").resolve())


def test_describe_error_names_the_file_only_for_the_file_s_values(tmp_path):
    from snncc.config import ConfigSource, describe_error, open_config

    cfg = open_config(_write(tmp_path, "calib_batch = 0\n[quantize]\nmembrane_bits = 12\n"
                                       "[quantize.layer_bits]\nconv9 = 4\n"))
    where = str(tmp_path / "snncc.toml")
    err = SnnccError("must be >= 1, got 0", option="calib_batch")
    assert str(err) == "option --calib-batch must be >= 1, got 0"
    assert describe_error(err, ConfigSource(cfg)) == \
        f"option --config: key 'calib_batch' in {where}: must be >= 1, got 0"
    err = SnnccError(": unknown layer 'conv9'; valid names are x", option="layer_bits", key="conv9")
    assert describe_error(err, ConfigSource(cfg)) == (f"option --config: key 'quantize.layer_bits.conv9' in {where}: "
                                                      "unknown layer 'conv9'; valid names are x")
    # a flag set the value: the error is the flag's
    err = SnnccError("must be in 4..32, got 3", option="membrane_bits")
    assert describe_error(err, ConfigSource(cfg, flags={"membrane_bits"})) == str(err)
    err = SnnccError(": unknown layer 'frist'; valid names are x", option="layer_bits", key="frist")
    assert describe_error(err, ConfigSource(cfg, flag_layers={"frist"})) == str(err)
    # an option the file does not set is never blamed on it, whatever the text says
    cfg2 = open_config(_write(tmp_path, "threshold = 'mse'\n"))
    err = SnnccError("must be one of none, output; got 'x'", option="threshold_search")
    assert describe_error(err, ConfigSource(cfg2)) == str(err)
    assert describe_error(err, None) == str(err)


def test_a_given_input_scale_keeps_integer_inputs_exact():
    """--input-scale 1: event counts enter as themselves (x_q = x), and the integer SNN
    keeps the float SNN's input layer (the scale folds into the first weights)."""
    from snncc.sim.int_runtime import quantize_input

    auto = quantize.run(tiny_snn(), PassContext(CompileOptions().validate()))
    assert auto.meta["input_scale"] != 1.0  # tiny_snn's inputs are in [0, 1): max|x| / 127
    counts = np.random.default_rng(3).integers(0, 128, size=(5, 1, 8, 8)).astype(np.float32)
    given = quantize.run(tiny_snn(), PassContext(CompileOptions(input_scale=1.0).validate()))
    assert given.meta["input_scale"] == 1.0
    assert np.array_equal(quantize_input(given, counts), counts)
    assert not np.array_equal(quantize_input(auto, counts), counts)


@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan"), True])
def test_bad_input_scale_names_the_option(value):
    with pytest.raises(SnnccError, match="option --input-scale"):
        CompileOptions(input_scale=value).validate()
