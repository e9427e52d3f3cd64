"""C backend: bit-exact against the integer runtime on hand-built integer graphs."""

from __future__ import annotations

import re

import numpy as np
import pytest
from c_graphs import (
    IntGraphBuilder,
    block_conv_net,
    conv_geometry_net,
    dw_group_geometry_net,
    few_channel_net,
    group_block_net,
    sample_inputs,
    simd_builds,
)

from snncc.backends.c import target as c_target
from snncc.backends.c.emit import c_memory, emit_c
from snncc.backends.c.verify_c import build_host, compare_c, flat_outputs, run_host
from snncc.compiler import spike_rates
from snncc.errors import SnnccError
from snncc.sim.int_runtime import run_int


def _lenet(T=1, N=4, bits=8, mb=16, shift=0, signed=False):
    b = IntGraphBuilder((1, 12, 12), timesteps=T, seed=bits * 100 + N)
    h = b.neuron(b.conv("x", 6, k=3, pad=1, bits=8), levels=N, membrane_bits=mb, shift=shift)
    h = b.pool("maxpool", h)
    h = b.neuron(b.conv(h, 8, k=3, pad=0, bits=bits), levels=N, signed=signed, membrane_bits=mb, shift=shift)
    h = b.pool("sumpool", h, k=2, stride=2)
    h = b.flatten(h)
    h = b.neuron(b.dense(h, 16, bits=bits), levels=N, membrane_bits=mb, shift=shift)
    return b.build(b.dense(h, 10, bits=8))


def _residual(T=1, N=4, bits=8, ranges=True):
    """Conv stem, a residual block (affine identity shortcut + add), a downsampling
    block with a 1x1 stride-2 shortcut conv, a signed join neuron, GAP as sumpool."""
    b = IntGraphBuilder((3, 8, 8), timesteps=T, seed=7, ranges=ranges)
    s = b.neuron(b.conv("x", 8, bits=8), levels=N)
    h = b.neuron(b.conv(s, 8, bits=bits), levels=N)
    h = b.conv(h, 8, bits=bits)
    j = b.neuron(b.add(h, b.affine(s)), levels=N)
    m = b.neuron(b.conv(j, 12, stride=2, bits=bits), levels=N)
    m = b.conv(m, 12, bits=bits)
    sc = b.conv(j, 12, k=1, stride=2, pad=0, bits=bits)
    j2 = b.neuron(b.add(m, sc), levels=N, signed=True)
    g = b.pool("sumpool", j2, k=4, stride=4)
    return b.build(b.dense(b.flatten(g), 10))


def _mobile(T=1, N=4, bits=8):
    """Inverted residual: 1x1 expand, depthwise 3x3, linear 1x1 bottleneck (signed),
    grouped conv, channel shuffle, concat, pad, dilation, reshape."""
    b = IntGraphBuilder((4, 9, 9), timesteps=T, seed=11)
    s = b.neuron(b.conv("x", 8, k=1, pad=0, bits=8), levels=N, signed=True)
    e = b.neuron(b.conv(s, 16, k=1, pad=0, bits=bits), levels=N)
    d = b.neuron(b.conv(e, 16, k=3, pad=1, group=16, bits=bits), levels=N)
    p = b.conv(d, 8, k=1, pad=0, bits=bits)
    j = b.neuron(b.add(p, b.affine(s)), levels=N, signed=True)
    gc = b.neuron(b.conv(j, 8, k=3, pad=2, dil=2, group=4, bits=bits), levels=N)
    sh = b.shuffle(gc, 4)
    cat = b.concat(sh, j, axis=0)
    pd = b.pad(cat, (1, 0, 0, 1))
    dm = b.neuron(b.conv(pd, 16, k=3, stride=2, pad=0, group=16, bits=bits), levels=N)  # depthwise x1
    mp = b.pool("maxpool", dm, k=3, stride=2, pad=1)
    r = b.reshape(b.flatten(mp), (4, 4, 4))
    cw = b.concat(r, r, axis=2)
    return b.build(b.dense(b.flatten(cw), 6), b.conv(cw, 3, k=1, pad=0))


CASES = {
    "lenet_T1_N4_b8": lambda: _lenet(),
    "lenet_T4_N1_b4": lambda: _lenet(T=4, N=1, bits=4),
    "lenet_T4_N2_b2_signed_shift": lambda: _lenet(T=4, N=2, bits=2, signed=True, shift=3),
    "lenet_T1_N15_b2_sat8": lambda: _lenet(N=15, bits=2, mb=8),
    "lenet_T1_N4_b6": lambda: _lenet(bits=6),
    "lenet_T4_N15_b8_sat6": lambda: _lenet(T=4, N=15, mb=6),
    "residual_T1_N4_b8": lambda: _residual(),
    "residual_T4_N2_b4": lambda: _residual(T=4, N=2, bits=4),
    "residual_T4_N4_b8_no_ranges": lambda: _residual(T=4, N=4, ranges=False),
    "mobile_T1_N4_b8": lambda: _mobile(),
    "mobile_T4_N1_b2": lambda: _mobile(T=4, N=1, bits=2),
    "mobile_T1_N15_b4": lambda: _mobile(N=15, bits=4),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bit_exact(case, tmp_path):
    graph = CASES[case]()
    out = tmp_path / "out"
    out.mkdir()
    emit_c(graph, out)
    x = sample_inputs(graph.values["x"].shape, n=100)
    expected = flat_outputs(graph, run_int(graph, x))
    # the x86-64 kernel paths this host runs (AVX-512 VNNI, AVX2; SSE2 in the block tests
    # below), and the portable C kernels (what firmware runs) under ASan/UBSan
    for opt, simd in simd_builds(sse2=False):
        exe = build_host(out, opt=opt, sanitize=simd == "c")
        res = compare_c(graph, out, x, exe=exe, expected=expected)
        assert res.ok, f"{opt}: {res.summary()}"
        assert run_host(exe, x[:1], bench_iters=1)[1]["simd"] == simd, opt
    # neurons use the division-free kernel when range analysis bounds the currents
    code = (out / "model.c").read_text()
    has_range = all("range" in n.attrs for n in graph.nodes)
    assert ("snncc_neuron_fast(" in code) == has_range
    # the graphs exercise spikes: not all levels zero, not all saturated
    neurons = [n.output for n in graph.nodes if n.op == "neuron"]
    caps = run_int(graph, x[:20], capture=neurons)
    for v in neurons:
        assert np.any(caps[v] != 0), v


@pytest.mark.parametrize("mode", ["dense", "event"])
def test_block_conv_paths(mode, tmp_path):
    """The blocked conv kernels (multi-pixel dense, one-pixel event-driven) on every SIMD
    path this host runs and the portable one, all under ASan/UBSan."""
    graph = block_conv_net()
    neurons = [n.output for n in graph.nodes if n.op == "neuron"]
    out = tmp_path / "o"
    out.mkdir()
    report = c_target.emit(graph, out, name="model", spike_rates={v: 1.0 if mode == "dense" else 0.0 for v in neurons})
    layers = report["c_memory"]["layers"]
    assert [x["mode"] for x in layers] == ["dense"] + [mode] * 5  # the image layer is always dense
    assert (out / "model.c").read_text().count("snncc_conv_block_i8(") == 2 * 6  # fused and x86 schedules
    x = sample_inputs(graph.values["x"].shape, n=40)
    expected = flat_outputs(graph, run_int(graph, x))
    caps = run_int(graph, x, capture=neurons)
    assert caps[neurons[0]].max() == 127 and caps[neurons[2]].min() < 0  # extreme levels reach the convs
    for opt, simd in simd_builds():
        exe = build_host(out, opt=opt, sanitize=True)
        res = compare_c(graph, out, x, exe=exe, expected=expected)
        assert res.ok, f"{opt}: {res.summary()}"
        assert run_host(exe, x[:1], bench_iters=1)[1]["simd"] == simd, opt


def _assert_bit_exact_on_every_simd_path(graph, out):
    """The emitted C in ``out`` equals the integer runtime on 30 random inputs, built for
    every SIMD path this host runs (the best and the portable one under ASan/UBSan)."""
    x = sample_inputs(graph.values["x"].shape, n=30)
    expected = flat_outputs(graph, run_int(graph, x))
    builds = simd_builds()
    for i, (opt, simd) in enumerate(builds):
        exe = build_host(out, opt=opt, sanitize=i in (0, len(builds) - 1))
        res = compare_c(graph, out, x, exe=exe, expected=expected)
        assert res.ok, f"{opt}: {res.summary()}"
        assert run_host(exe, x[:1], bench_iters=1)[1]["simd"] == simd, opt


@pytest.mark.parametrize("seed", [0, 1])
def test_block_conv_geometry(seed, tmp_path):
    """Random conv geometries on the blocked kernels, every SIMD path (the best and the
    portable one under ASan/UBSan)."""
    graph = conv_geometry_net(seed)
    out = tmp_path / "o"
    out.mkdir()
    emit_c(graph, out, spike_rates={n.output: 0.5 for n in graph.nodes if n.op == "neuron"})
    assert (out / "model.c").read_text().count("snncc_conv_block_i8(") == 2 * 15  # fused and x86 schedules
    _assert_bit_exact_on_every_simd_path(graph, out)


@pytest.mark.parametrize("seed", [0, 1])
def test_few_channel_conv_geometry(seed, tmp_path):
    """Convs on 1 and 2 input channels of random geometry: taps packed in quads (x86
    schedule) and windows copied (firmware schedule), every SIMD path (the best and the
    portable one under ASan/UBSan)."""
    graph = few_channel_net(seed)
    out = tmp_path / "o"
    out.mkdir()
    emit_c(graph, out, spike_rates={n.output: 0.5 for n in graph.nodes if n.op == "neuron"})
    code = (out / "model.c").read_text()
    assert "snncc_pack_taps_i8(" in code and "snncc_im2col_i8(" in code
    _assert_bit_exact_on_every_simd_path(graph, out)


@pytest.mark.parametrize("mode", ["dense", "event"])
def test_group_block_geometry(mode, tmp_path):
    """Grouped convs of random geometry a group at a time on the block kernels (x86
    schedule; the firmware one keeps the scatter), dense and event-driven, every SIMD
    path (the best and the portable one under ASan/UBSan)."""
    graph = group_block_net(0 if mode == "dense" else 1)
    out = tmp_path / "o"
    out.mkdir()
    emit_c(graph, out, spike_rates={n.output: 1.0 if mode == "dense" else 0.0 for n in graph.nodes if n.op == "neuron"})
    code = (out / "model.c").read_text()
    assert code.count("snncc_conv_group_i8(") == 10 and code.count("snncc_conv_i8(") == 10
    _assert_bit_exact_on_every_simd_path(graph, out)


def test_dw_group_packed_geometry(tmp_path):
    """Depthwise (x86 AVX-512/AVX2 kernels), grouped and packed 4-/2-bit block convs of
    random geometry, every SIMD path (the best and the portable one under ASan/UBSan)."""
    graph = dw_group_geometry_net(0, branches=14)
    out = tmp_path / "o"
    out.mkdir()
    emit_c(graph, out)
    code = (out / "model.c").read_text()
    assert "snncc_dwconv_i8(" in code and ("snncc_conv_block_w4(" in code or "snncc_conv_block_w2(" in code)
    x = sample_inputs(graph.values["x"].shape, n=30)
    expected = flat_outputs(graph, run_int(graph, x))
    builds = simd_builds(sse2=False)
    for i, (opt, simd) in enumerate(builds):
        exe = build_host(out, opt=opt, sanitize=i in (0, len(builds) - 1))
        res = compare_c(graph, out, x, exe=exe, expected=expected)
        assert res.ok, f"{opt}: {res.summary()}"
        assert run_host(exe, x[:1], bench_iters=1)[1]["simd"] == simd, opt


def test_signed_negative_membrane_and_saturation(tmp_path):
    """A signed neuron driven strongly negative and positive at 6-bit membrane."""
    b = IntGraphBuilder((2, 6, 6), timesteps=4, seed=3)
    n = b.neuron(b.conv("x", 4, bits=8), levels=2, signed=True, membrane_bits=6, scale=0.05)
    graph = b.build(b.dense(b.flatten(n), 5))
    node = graph.nodes[1]
    node.params["theta"] = np.array([6, 7, 9, 13], np.int32)  # v in [-32, 31] reaches +-2 levels
    node.params["v_init"] = node.params["theta"] // 2
    out = tmp_path / "o"
    out.mkdir()
    emit_c(graph, out)
    x = sample_inputs((2, 6, 6), n=50)
    caps = run_int(graph, x, capture=[n])
    assert (caps[n] == -2).any() and (caps[n] == 2).any()
    res = compare_c(graph, out, x, exe=build_host(out, sanitize=True))
    assert res.ok, res.summary()


def test_weights_of_a_many_channel_conv_are_stored_once():
    """Only an image-like conv (under 4 input channels) carries a second, im2col weight form: a
    pruned conv on 6, 15 or 58 channels would gain a few quads and double its flash."""
    from snncc.backends.c.plan import build_plan

    graph = _lenet()  # conv on 1 channel, then a conv on 6
    idents = [a.ident for a in build_plan(graph, None).arrays]
    convs = [x["ident"] for x in c_memory(graph)["layers"] if x["op"] == "conv"]
    assert f"{convs[0]}i_w" in idents  # the first conv keeps both forms
    assert f"{convs[1]}i_w" not in idents and f"{convs[1]}_w" in idents


def test_memory_plan_reuses_buffers():
    graph = _residual()
    mem = c_memory(graph)
    assert mem["peak_live_bytes"] <= mem["arena_bytes"]
    total = sum(int(np.prod(v.shape)) * (1 if v.dtype == "int8" else 4) for v in graph.values.values())
    assert mem["arena_bytes"] < total  # buffers are shared
    assert mem["arena_over_peak"] < 1.5
    assert mem["membrane_bytes"] == 0  # T=1 keeps no membrane
    mem4 = c_memory(_residual(T=4))
    neurons = [n for n in _residual(T=4).nodes if n.op == "neuron"]
    assert mem4["membrane_bytes"] == sum(4 * int(np.prod(graph.values[n.output].shape)) for n in neurons)
    modes = {x["ident"]: x["mode"] for x in mem["layers"]}
    assert modes["l0_conv"] == "dense" and modes["l2_conv"] == "event"


def test_deterministic_and_identifier_injection(tmp_path):
    g1 = _lenet()
    g2 = _lenet()
    hostile = "*/ int x; /*"
    for i, node in enumerate(g2.nodes):
        node.name = f"{hostile}{i}\n#define main"
    g2.name = hostile
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    emit_c(g1, a)
    emit_c(_lenet(), b)
    emit_c(g2, c)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    # names only change comments: strip comments and compare the code
    def code(text):
        return re.sub(r"/\*.*?\*/", "", text, flags=re.S)

    for f in files:
        ta, tc = (a / f).read_text(), (c / f).read_text()
        assert code(ta) == code(tc), f
        assert "int x;" not in code(tc)
    x = sample_inputs((1, 12, 12), n=5)
    assert compare_c(g2, c, x).ok


def test_debug_build_locates_divergence(tmp_path):
    graph = _lenet()
    out = tmp_path / "o"
    out.mkdir()
    emit_c(graph, out)
    x = sample_inputs((1, 12, 12), n=10)
    # corrupt one weight of the second conv in the emitted code only
    wfile = out / "model_weights.c"
    text = wfile.read_text()
    m = re.search(r"model_l3_conv_w\[\d+\] = \{\n    (-?\d+),", text)
    assert m is not None
    old = int(m.group(1))
    text = text[:m.start(1)] + str(-old if old else 1) + text[m.end(1):]
    wfile.write_text(text)
    res = compare_c(graph, out, x)
    assert not res.ok
    assert res.diverging_node == graph.nodes[3].name
    assert "first diverging node" in res.summary()


def test_dump_matches_captures(tmp_path):
    graph = _mobile(T=4, N=2, bits=4)
    out = tmp_path / "o"
    out.mkdir()
    emit_c(graph, out)
    x = sample_inputs((4, 9, 9), n=3)
    ref = run_int(graph, x, capture=[n.output for n in graph.nodes])
    for opt in ("-O2", "-O2 -DSNNCC_NO_SIMD"):  # the x86 schedule, and the fused one of firmware
        exe = build_host(out, debug=True, opt=opt)
        outs, dumps = run_host(exe, x, dump=True)
        assert len(dumps) == len(x)
        for s in range(len(x)):
            for i, node in enumerate(graph.nodes):
                if node.output in graph.outputs:
                    continue
                np.testing.assert_array_equal(dumps[s][i], ref[node.output][s].reshape(-1), err_msg=f"{opt} {node.op}")


def test_bad_inputs(tmp_path):
    graph = _lenet()
    with pytest.raises(SnnccError, match="not a C identifier"):
        emit_c(graph, tmp_path, name="1bad")
    fl = graph.copy()
    fl.stage = "snn"
    with pytest.raises(SnnccError, match="integer IR"):
        emit_c(fl, tmp_path)
    out = tmp_path / "o"
    out.mkdir()
    emit_c(graph, out)
    with pytest.raises(SnnccError, match="C compiler 'no-such-cc' not found; install gcc or pass --cc"):
        build_host(out, cc="no-such-cc")


def test_spike_rates_pick_kernels(tmp_path):
    """Measured rates (explicit, or from the report's neuron entries) choose event vs dense."""
    graph = _residual()
    neuron = graph.nodes[1]
    assert neuron.op == "neuron"
    report = {"layers": [{"name": neuron.name, "op": "neuron", "spike_rate": 0.9}]}
    info = c_target.emit(graph, tmp_path, name="model", spike_rates=spike_rates(graph, report))
    modes = {x["ident"]: x["mode"] for x in info["c_memory"]["layers"]}
    assert modes["l2_conv"] == "dense" and modes["l4_conv"] == "event"
    low = c_memory(graph, spike_rates={neuron.output: 0.05})
    assert {x["ident"]: x["mode"] for x in low["layers"]}["l2_conv"] == "event"
    # the block kernel, called whole or (fused with its neuron) on a row-narrowed copy of l2's geometry
    assert re.search(r"snncc_conv_block_i8\(&l2_conv_p|g_ = l2_conv_p;[^}]*snncc_conv_block_i8\(&g_",
                     (tmp_path / "model.c").read_text())
