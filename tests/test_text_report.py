"""The text summary printed by `snncc compile`: content, tolerance of missing keys."""

from __future__ import annotations

from report_sample import HOSTILE_NAME, sample_report

from snncc.text_report import bytes_text, energy_text, format_summary, pct


def test_summary_has_the_headline_figures():
    text = format_summary(sample_report())
    assert text.splitlines()[0] == "snncc: digits_cnn.onnx -> c (N=4, T=1, weight bits=8)"
    assert "accuracy   ANN 99.26%  SNN 98.70%  top-1 agreement 99.07% (on the calibration data)" in text
    assert "812.2 spike events, 1402.5 spike levels, 61234 SOPs per inference" in text
    # 1311824 pJ vs 55110.6 pJ: ratio 23.80
    assert "ANN 1.31 uJ  SNN 55.11 nJ (23.8x less)" in text
    assert "weights 226560 bits (27.66 KiB)" in text and "compression 3.98x vs fp32" in text
    assert ("C          arena (RAM) 3072 B (3.00 KiB), membranes 512 B, peak live 2816 B (2.75 KiB), "
            "const tables (flash) 30112 B (29.41 KiB)") in text


def test_layer_table_one_row_per_layer_and_names_are_one_line():
    report = sample_report()
    lines = format_summary(report).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    rows = lines[header + 1: header + 1 + len(report["layers"])]
    assert rows[0].split() == ["conv1", "conv", "41.0%", "1.700", "0", "9216", "8"]
    assert rows[2].split() == ["fc", "dense", "-", "-", "18234", "5120", "8"]  # null: not applicable
    assert HOSTILE_NAME not in "\n".join(lines)  # control char replaced, long name clipped
    assert "\x07" not in "\n".join(lines)


def test_missing_keys_render_na():
    text = format_summary({"schema_version": 1})
    assert "ANN n/a  SNN n/a" in text and "compression n/a" in text
    assert "C " not in text  # no C section without report["c_memory"]
    assert "C          arena (RAM) 100 B" in format_summary({"c": {"arena_bytes": 100}})
    # wrong types do not crash either
    text = format_summary({"accuracy": "bad", "layers": [None, {"name": "x"}], "memory": [], "notes": "x"})
    assert text.splitlines()[-1].split() == ["x", "?", "n/a", "n/a", "n/a", "-", "-"]


def test_layer_bits_come_from_the_memory_section():
    report = sample_report()
    for layer in report["layers"]:
        layer.pop("weight_bits")
    report["memory"]["layers"][2].update(op="dense", bits=4)
    lines = format_summary(report).splitlines()
    assert next(line for line in lines if line.startswith("fc ")).split()[-1] == "4"
    assert next(line for line in lines if line.startswith("conv1 ")).split()[-1] == "-"


def test_formatters():
    assert pct(0.5) == "50.00%" and pct(None) == "n/a" and pct(float("nan")) == "n/a"
    assert energy_text(900.0) == "900.0 pJ" and energy_text(2.5e6) == "2.50 uJ"
    assert bytes_text(100) == "100 B" and bytes_text(2048) == "2048 B (2.00 KiB)"


def test_fpga_section_prints_cycles_estimate_and_every_note():
    fpga = {"cycles": 126660, "event_driven": False, "lanes": 3, "resources": {"bram": 41, "dsp": 0, "ff": 888,
                                                                               "lut": 4176},
            "notes": ["l0_conv: --lanes 3 clamped to 2 (a divisor of its 16 output channels per group)",
                      "l5_dense: 1 lane, not 3 (a small layer)"]}
    lines = format_summary({"fpga": fpga}).splitlines()
    assert ("FPGA       lanes 3, 126,660 cycles per inference (1,266.6 us at 100 MHz); estimate 4176 LUT, "
            "888 FF, 41 BRAM, 0 DSP") in lines
    # the clamped lanes are only said in these notes: the docs promise the compile prints them
    assert "note: fpga: l0_conv: --lanes 3 clamped to 2 (a divisor of its 16 output channels per group)" in lines
    assert "note: fpga: l5_dense: 1 lane, not 3 (a small layer)" in lines
    assert "FPGA" not in format_summary({}) and format_summary({"fpga": {"notes": "x"}})  # bad types: no crash
