"""IR serialization: round trip, byte-identical files, determinism of the compile."""

import json

import numpy as np
import pytest
from quant_graphs import sample_x, tiny_snn

from snncc.errors import SnnccError
from snncc.irio import load_ir, save_ir
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import quantize
from snncc.sim.int_runtime import quantize_input, run_int


def _int_graph():
    return quantize.run(tiny_snn(timesteps=2), PassContext(CompileOptions(weight_bits=6, layer_bits={"first": 8})))


def test_round_trip_equal(tmp_path):
    gi = _int_graph()
    save_ir(gi, tmp_path / "a")
    back = load_ir(tmp_path / "a")
    back.verify()
    assert back.dump() == gi.dump()
    assert back.meta == gi.meta
    for a, b in zip(gi.nodes, back.nodes):
        assert (a.name, a.op, a.inputs, a.output, a.origin, a.attrs) == (b.name, b.op, b.inputs, b.output,
                                                                         b.origin, b.attrs)
        assert sorted(a.params) == sorted(b.params)
        for k in a.params:
            assert a.params[k].dtype == b.params[k].dtype
            np.testing.assert_array_equal(a.params[k], b.params[k])
    np.testing.assert_array_equal(back.stats["x"]["absmax"], gi.stats["x"]["absmax"])
    assert isinstance(back.node("conv1").attrs["strides"], tuple)
    xq = quantize_input(gi, sample_x(20))
    np.testing.assert_array_equal(run_int(back, xq)["out"], run_int(gi, xq)["out"])


def test_files_are_byte_identical_and_plain(tmp_path):
    save_ir(_int_graph(), tmp_path / "a")
    save_ir(_int_graph(), tmp_path / "b")  # compiled twice
    for ext in (".json", ".npz"):
        assert (tmp_path / f"a{ext}").read_bytes() == (tmp_path / f"b{ext}").read_bytes()
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["stage"] == "int" and doc["format"] == "snncc-ir"
    with np.load(tmp_path / "a.npz") as z:  # a normal npz for numpy users
        assert z["n00000.weight"].dtype == np.int8


def test_resave_is_identical(tmp_path):
    save_ir(_int_graph(), tmp_path / "a")
    save_ir(load_ir(tmp_path / "a"), tmp_path / "b")
    for ext in (".json", ".npz"):
        assert (tmp_path / f"a{ext}").read_bytes() == (tmp_path / f"b{ext}").read_bytes()


def test_bad_files(tmp_path):
    with pytest.raises(SnnccError, match="cannot read IR"):
        load_ir(tmp_path / "missing")
    (tmp_path / "x.json").write_text('{"format": "other"}')
    save_ir(_int_graph(), tmp_path / "y")
    (tmp_path / "y.npz").rename(tmp_path / "x.npz")
    with pytest.raises(SnnccError, match="not an snncc IR"):
        load_ir(tmp_path / "x")
