"""The semantics core: what every IR op and the neuron compute, written once.

- ``kernels``: vectorized numpy kernels, one per op (batch-major N, C, H, W);
- ``neuron``: the neuron step, the T=1 level quantizer and v_init;
- ``walk``: the one graph walker (env, capture, last-use freeing, input-only values);
- ``float_runtime`` (float IR), ``snn_sim`` (float SNN), ``int_runtime`` (integer SNN,
  the golden model) are walkers that override only the per-node step; the interval
  range analysis (passes/range_analysis.py) is one more.

Passes and the driver import from here; ``backends/`` holds only targets.
"""
