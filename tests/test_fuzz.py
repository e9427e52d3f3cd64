"""Differential fuzzing (tests/fuzz_graphs.py): random small CNNs as ONNX, each either
rejected with a clean one-line SnnccError, or compiled to C that is bit-exact against the
integer runtime, with the float IR matching onnxruntime.

A fixed number of examples from a fixed seed (derandomized), so CI is reproducible;
bench/fuzz.py runs the same check for as long as you give it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from c_graphs import simd_builds
from fuzz_graphs import HypothesisChooser, check_case, random_case, save_reproducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = 50
# the host's best x86 kernels and the portable C (what firmware runs), alternately
BUILDS = [opt for opt, _ in simd_builds(sse2=False)]


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_graphs(data, tmp_path_factory):
    ch = HypothesisChooser(data)
    case = random_case(ch)
    opt = ch.choice(BUILDS)
    work = tmp_path_factory.mktemp("fuzz")
    outcome = check_case(case, work, opt=opt)
    if outcome.category == "failure":
        repro = save_reproducer(case, outcome, Path(work) / "repro")
        pytest.fail(f"{outcome.stage}: {case.describe()}\n{outcome.detail}\nreproducer: {repro}")
