"""The FPGA resource model's mapping rules (backends/fpga/estimate.py), one shape per rule.

Each case is a memory or core shape whose yosys 0.23 mapping was read from memory_libmap's own
cost report (``debug memory_libmap``) or a synthesis of the digits CNN / resnet8 (docs/fpga.md);
the model must put it where yosys does.  No yosys run here: these are the model's rules.
"""

from __future__ import annotations

import pytest

from snncc.backends.fpga.estimate import _memory, core_resources, logic_parts, place


@pytest.mark.parametrize("family, kind, depth, width, banks, where", [
    # ECP5: the lanes-16 weight ROMs of the digits CNN are cheaper in logic (18*1024/16 = 1152) than in
    # 29 DP16KD (3714): yosys keeps them in LUTs
    ("ecp5", "rom", 18, 1024, 1, "logic"),
    ("ecp5", "rom", 36, 1024, 1, "logic"),
    ("ecp5", "rom", 320, 4, 1, "logic"),  # 80 < 130: one DP16KD costs more than 1280 bits of logic
    ("ecp5", "rom", 4608, 4, 1, "bram"),
    ("ecp5", "ram", 32, 8, 1, "lutram"),  # TRELLIS_DPR16X4 (23) against DP16KD (130)
    ("ecp5", "ram", 128, 4, 1, "lutram"),  # 52 < 130
    ("ecp5", "ram", 128, 10, 1, "bram"),  # 137 > 130
    ("ecp5", "ram", 512, 11, 1, "bram"),
    ("ecp5", "ram", 64, 64, 16, "lutram"),  # banked: 386 < 4 DP16KD (514)
    ("ecp5", "ram", 128, 64, 16, "bram"),  # banked: 802 > 514
    # iCE40: no LUT RAM; one EBR costs 64 (+2), a ROM bit 1/16, a RAM bit 1
    ("ice40", "rom", 320, 4, 1, "bram"),  # 80 > 66
    ("ice40", "rom", 128, 4, 1, "logic"),  # 32 < 66
    ("ice40", "rom", 9, 64, 1, "logic"),
    ("ice40", "ram", 10, 14, 1, "bram"),  # 140 > 66
    ("ice40", "ram", 8, 4, 1, "logic"),  # 32 < 66: flip-flops
    # 7-series RAMs: RAM64M (cost 1 per cell + 7 per 3 bits, plus mux/demux) against 129 per RAMB18
    ("xc7", "ram", 256, 10, 1, "lutram"),  # 128.3 < 131 (mobilenetv2: LUT RAM)
    ("xc7", "ram", 256, 11, 1, "bram"),  # 139 > 131 (resnet8, mobilenetv2: RAMB18)
    ("xc7", "ram", 128, 64, 16, "lutram"),  # banked: 16 byte enables would take 4 RAMB18
    # 7-series ROMs: 1/64 per bit against the block RAM (synth_xilinx keeps 1536x4 in logic)
    ("xc7", "rom", 1536, 4, 1, "logic"),
    ("xc7", "rom", 2304, 4, 1, "bram"),
])
def test_memory_goes_where_memory_libmap_puts_it(family, kind, depth, width, banks, where):
    assert place(family, kind, depth, width, banks) == where


def test_ecp5_banked_buffer_takes_a_byte_per_bank():
    # 16 banks of 4 bits, 128 deep: a DP16KD write enable covers a 9-bit byte, so four banks per
    # 36-bit word: 4 blocks (yosys: 4 DP16KD for this buffer of the digits CNN at lanes 16), not the
    # 2 that 64 bits in 36-bit words would take
    assert _memory("ecp5", "ram", 128, 64, 16) == {"bram": 4}


def test_words_up_to_a_byte_pack_by_bits_in_18k_blocks():
    # yosys fills DP16KD / RAMB18 with 9-bit bytes whatever the word: the 8-bit weight ROMs of the
    # digits CNN take 2 and 4 blocks (36,864 and 73,728 bits), not the 3 and 5 of 2048x9 tiles
    assert _memory("ecp5", "rom", 4608, 8) == {"bram": 2}
    assert _memory("ecp5", "rom", 9216, 8) == {"bram": 4}
    assert _memory("xc7", "rom", 4608, 8) == {"bram": 1}  # one RAMB36 (two RAMB18)


def test_rom_in_logic_builds_only_distinct_columns():
    # a 2-word ROM has at most 2 non-constant column patterns (the address bit and its inverse)
    assert _memory("ecp5", "rom", 2, 416) == {"lut": 2, "ff": 2}
    assert _memory("ice40", "rom", 1, 560) == {"lut": 0, "ff": 0}
    # ECP5 builds a function of a address bits from 2^(a-4) LUT4 (6 bits: 4 per column)
    assert _memory("ecp5", "rom", 36, 1024) == {"lut": 4096, "ff": 1024}
    assert _memory("ecp5", "rom", 18, 1024)["lut"] == 2048


def _eltwise(reduce: str, n_in: int) -> dict:
    return {"kind": "eltwise", "reduce": reduce, "lanes": 1, "banks": {"in": [1] * n_in, "out": 1},
            "widths": {"acc": 10, "in": [8] * n_in, "in_unsigned": [False] * n_in, "out": 10},
            "epilogue": {"kind": "none"}, "memories": []}


@pytest.mark.parametrize("family", ["ice40", "ecp5", "xc7"])
def test_eltwise_add_has_eltwise_control_not_a_window_loop(family):
    # an add's reduce is "sum" like a sum pool's, but its core is one element counter, not a window
    # core's loop nest: it costs what any two-input eltwise core costs (the old model charged it the
    # sum pool's control, 260 LUT4 instead of 120: resnet8's adds were +70% against yosys)
    assert core_resources(_eltwise("sum", 2), family) == core_resources(_eltwise("identity", 2), family)


def _mac(weight_bits: int) -> dict:
    return {"kind": "window", "reduce": "mac", "lanes": 4, "banks": {"in": [4], "out": 4}, "diagonal": False,
            "parallel": True, "widths": {"acc": 16, "in": [4], "in_unsigned": [True], "out": 16,
                                         "weight": weight_bits},
            "epilogue": {"kind": "none"}, "memories": []}


def test_xc7_dsp_products_take_their_adders_along():
    # 8x4 products are DSP48s on xc7 (9+ output bits), and xilinx_dsp packs the adder tree and the
    # accumulator into their post-adders (4 such products to a lane: 4 DSP48E1 and 14 LUT2 alone);
    # 4x4 products stay in LUTs with their adders
    wide, narrow = logic_parts(_mac(8), dsp=True), logic_parts(_mac(4), dsp=True)
    assert wide["dsp"] == 16 and wide["mul"] == 0
    assert narrow["dsp"] == 0 and narrow["mul"] > 0
    assert narrow["arith"] - wide["arith"] == 4 * (3 * 16 + 4 * 16)  # the lanes' trees and accumulators
    assert logic_parts(_mac(8), dsp=False)["arith"] == narrow["arith"]  # iCE40 / ECP5 -nodsp: all in LUTs
