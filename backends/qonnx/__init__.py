"""QONNX target: the integer SNN at T=1 as a QONNX-dialect ONNX file (docs/interop.md)."""
