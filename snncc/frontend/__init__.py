"""ONNX frontend: ONNX ModelProto -> snncc IR."""
