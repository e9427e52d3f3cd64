"""ONNX frontend: ONNX ModelProto -> snncc IR (stage ``float``).

Entry points (``snncc.frontend.onnx_import``): ``load_onnx(path)``,
``import_onnx_model(model, base_dir=None)`` (alias ``import_model``) and
``list_unsupported(model_or_path, base_dir=None)``.

Modules: ``reader`` validates (protobuf, external data, tensor sizes, cycles,
opset 9..21 with older opsets upgraded, checker, shape inference); ``folding``
evaluates constant nodes, including Shape chains over a symbolic batch;
``context`` holds the state the per-op importers in ``ops/`` share.

ONNX op -> IR op:

=============================================  ==========================================
Conv (2-D; group, depthwise, auto_pad)          conv
Gemm (transA=0), MatMul with a constant weight  dense (a following Add of a constant is its bias)
BatchNormalization (inference)                  affine (canonicalize folds it into conv/dense)
Add/Sub/Mul/Div by a per-channel/scalar const   affine
Add, Sum of activations                         add
Relu, Clip(min=0[, max])                        relu (max)
MaxPool, GlobalMaxPool, ReduceMax over H,W       maxpool (ceil_mode becomes extra padding)
AveragePool, GlobalAveragePool, ReduceMean H,W   avgpool
Flatten(axis=1), Reshape, Squeeze, Unsqueeze     flatten / reshape (per sample, constant shape)
Concat (non-batch axis)                          concat
Pad (constant zero, spatial)                     pad
Reshape-Transpose(0,2,1,3,4)-Reshape             channel_shuffle
Softmax producing a graph output                 softmax
Dropout, Identity, Cast to float/double          (dropped)
Constant, ConstantOfShape, Shape, Gather, ...    folded when their inputs are constant
=============================================  ==========================================
"""
