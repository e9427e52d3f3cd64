"""C emitter: integer IR (stage ``int``) -> a C99 library plus a host runner.

The emitter reads only the integer IR and writes:

- ``<name>.h``: the API, shapes, sizes and the input scale;
- ``<name>.c``: the schedule, one kernel call per node, buffers in one arena;
- ``<name>_weights.c``: ``const`` weight arrays (2-/4-bit packed where bits <= 4);
- ``snncc_kernels.h/.c``, ``main_host.c``, ``Makefile``, ``CMakeLists.txt``.

Identifiers are generated (``l3_conv``); model names appear only in sanitized
comments.  The output is a pure function of the graph: byte-identical across runs.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np

from snncc.backends.c import layout as L
from snncc.backends.c.plan import Plan, build_plan
from snncc.errors import SnnccError, sanitize_name
from snncc.ir import Graph

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TEMPLATES = ("snncc_kernels.h", "snncc_kernels.c")
# Files every emitted folder holds whatever the model's name; ``<name>.h/.c`` and
# ``<name>_weights.c`` must not overwrite them.
FIXED_FILES = ("main_host.c", "Makefile", "CMakeLists.txt", *_TEMPLATES)
# Headers the emitted code or its users include with <...>: the build puts the output
# folder on the include path, so a ``<name>.h`` of one of these names would shadow it.
C_HEADERS = frozenset({
    "assert", "complex", "ctype", "errno", "fenv", "float", "inttypes", "iso646", "limits", "locale", "math",
    "setjmp", "signal", "stdalign", "stdarg", "stdatomic", "stdbit", "stdbool", "stdckdint", "stddef", "stdint",
    "stdio", "stdlib", "stdnoreturn", "string", "strings", "tgmath", "threads", "time", "uchar", "wchar", "wctype",
    "unistd", "fcntl", "malloc", "alloca", "memory", "immintrin", "emmintrin", "xmmintrin", "pmmintrin",
    "tmmintrin", "smmintrin", "nmmintrin", "avxintrin", "avx2intrin", "arm_neon", "arm_acle", "arm_math", "cmsis_gcc"})


def named_files(name: str) -> tuple[str, ...]:
    """The files of an emitted folder named after the model."""
    return (f"{name}.h", f"{name}.c", f"{name}_weights.c")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an emitted C library (None when it can)."""
    if not _NAME_RE.match(name) or name.lower().startswith("snncc"):
        return "is not a C identifier (ASCII letters, digits, _; not starting with a digit or 'snncc')"
    if name.lower() in C_HEADERS:
        return f"would emit {name}.h, which shadows the C header <{name.lower()}.h>"
    fixed = {f.lower() for f in FIXED_FILES}
    clash = next((f for f in named_files(name) if f.lower() in fixed), None)
    if clash is not None:
        return f"would emit {clash}, which overwrites the generated file of that name"
    return None


def emit_c(graph: Graph, out_dir: Path, *, name: str = "model",
           spike_rates: dict[str, float] | None = None) -> list[Path]:
    """Write the C library for ``graph`` into the existing folder ``out_dir``; return the paths (sorted).

    ``spike_rates`` (value name -> measured fraction of non-zero levels, which the
    driver takes from the report, or ``run_int_levels`` on calibration data) picks the
    event-driven or the dense kernel per layer; without it, layers fed by neurons are
    event-driven.
    """
    return write_c(graph, out_dir, name=name, spike_rates=spike_rates)[0]


def write_c(graph: Graph, out_dir: Path, *, name: str = "model",
            spike_rates: dict[str, float] | None = None) -> tuple[list[Path], Plan]:
    """:func:`emit_c`, also returning the plan (its memory summary goes into the report)."""
    problem = name_problem(name)
    if problem is not None:
        raise SnnccError(f": {name!r} {problem}", option="name")
    out_dir = Path(out_dir)
    plan = build_plan(graph, spike_rates or {})
    host = build_plan(graph, spike_rates or {}, fuse=False)
    plan.host_arena_bytes = host.arena_bytes
    files = {
        f"{name}.h": _header(graph, plan, name, host),
        f"{name}.c": _source(graph, plan, name, host),
        f"{name}_weights.c": _weights(plan, name),
        "main_host.c": _template("main_host.c", name),
        "Makefile": _template("Makefile", name),
        "CMakeLists.txt": _template("CMakeLists.txt", name),
    }
    for tname in _TEMPLATES:
        files[tname] = _template(tname, name)
    written = []
    for fname in sorted(files):
        path = out_dir / fname
        path.write_bytes(files[fname].encode("utf-8"))
        written.append(path)
    return written, plan


def memory_summary(plan: Plan, host: Plan | None = None) -> dict:
    """Arena (RAM) and weight (flash) bytes, and the peak-live lower bound, of the fused
    schedule (firmware); ``host_arena_bytes``: the arena of the unfused x86-64 schedule."""
    weight_bytes = sum(a.nbytes for a in plan.arrays)
    return {
        "arena_bytes": plan.arena_bytes,
        "host_arena_bytes": host.arena_bytes if host else (plan.host_arena_bytes or plan.arena_bytes),
        "peak_live_bytes": plan.peak_live_bytes,
        "arena_over_peak": round(plan.arena_bytes / plan.peak_live_bytes, 4) if plan.peak_live_bytes else 1.0,
        "membrane_bytes": plan.membrane_bytes,
        "weight_bytes": weight_bytes,
        "buffers": len(plan.buffers),
        "layers": [dict(x) for x in plan.layer_info],
    }


def c_memory(graph: Graph, spike_rates: dict[str, float] | None = None) -> dict:
    """The memory summary of ``graph`` without writing files."""
    return memory_summary(build_plan(graph, spike_rates), build_plan(graph, spike_rates, fuse=False))


# --- files ----------------------------------------------------------------------

def _template(fname: str, name: str) -> str:
    text = resources.files("snncc.backends.c").joinpath("templates", fname).read_text(encoding="utf-8")
    return text.replace("@NAME@", name).replace("@UNAME@", name.upper())


# The schedule with convs fused into their neurons row by row, except on x86-64 builds
# with the SIMD kernels (GCC/Clang), which run faster on whole tensors.
FUSION_CONDITION = "defined(SNNCC_NO_SIMD) || !(defined(__GNUC__) && defined(__x86_64__))"


def _header(graph: Graph, plan: Plan, name: str, host: Plan | None = None) -> str:
    host = host or plan
    u = name.upper()
    in_shape = graph.values[graph.inputs[0]].shape
    scale = graph.meta.get("input_scale")
    scale_str = repr(float(scale)) if scale is not None else "unknown"
    out_desc = ", ".join(f"{list(graph.values[v].shape)}" for v in graph.outputs)
    lines = [
        f"/* {name}.h: generated by snncc from model {sanitize_name(graph.name)}. Do not edit. */",
        f"#ifndef {u}_H",
        f"#define {u}_H",
        "",
        "#include <stdint.h>",
        "",
        "/*",
        f" * Input: int8, shape {list(in_shape)} (C order, one sample).  Quantize a real input x as",
        " *   x_q = clamp(round_half_even(x / s_x), -128, 127)",
        f" * with s_x = {u}_INPUT_SCALE_STR = {scale_str} (a string: the library has no float).",
        f" * Output: int32, {plan.output_size} values (outputs {out_desc}, C order, concatenated):",
        f" * the current of the last synaptic layer accumulated over {u}_TIMESTEPS timesteps.",
        " * Real logits are out_q[o] * S[o] / T with the per-output scales S below / in report.json.",
    ]
    lines += _output_scale_comment(graph)
    lines += [
        " */",
        f"#define {u}_INPUT_SCALE_STR \"{scale_str}\"",
        f"#define {u}_TIMESTEPS {plan.timesteps}",
        f"#define {u}_INPUT_SIZE {plan.input_size}",
    ]
    for axis, dim in zip("CHW" if len(in_shape) == 3 else [str(i) for i in range(len(in_shape))], in_shape):
        lines.append(f"#define {u}_INPUT_{axis} {dim}")
    lines += [
        f"#define {u}_OUTPUT_SIZE {plan.output_size}",
        "/* Working memory: activations and membranes, planned by liveness.  Builds without the",
        " * x86-64 SIMD kernels (firmware) compute convs row by row inside their neurons' step. */",
        f"#if {FUSION_CONDITION}",
        "#define SNNCC_ROW_FUSION 1",
        f"#define {u}_ARENA_BYTES {plan.arena_bytes} /* peak-live bound {plan.peak_live_bytes} */",
        "#else",
        f"#define {u}_ARENA_BYTES {host.arena_bytes} /* peak-live bound {host.peak_live_bytes} */",
        "#endif",
        "",
        "/* Caller-owned working memory for the reentrant entry point. */",
        "typedef struct {",
        f"    int32_t arena[({u}_ARENA_BYTES + 3) / 4];",
        f"}} {name}_ctx_t;",
        "",
        "/* Run one inference with a static arena (not reentrant).  Returns 0, or -1 on NULL. */",
        f"int {name}_run(const int8_t *input, int32_t *output);",
        "/* Run one inference with caller-owned memory (reentrant).  Returns 0, or -1 on NULL. */",
        f"int {name}_run_ctx({name}_ctx_t *ctx, const int8_t *input, int32_t *output);",
        "",
        "#ifdef SNNCC_DEBUG",
        "/* Debug builds call this (user-provided) hook with every node's output at the last",
        " * timestep: node index, data, element size, and (h, w, c) with hwc != 0 for HWC data. */",
        f"void {name}_debug_dump(int32_t node, const void *data, int32_t esize, int32_t h, int32_t w,",
        "                        int32_t c, int32_t hwc);",
        "#endif",
        "#ifdef SNNCC_PROFILE",
        "/* Profiling builds call this (user-provided) hook after every node of every timestep. */",
        f"void {name}_profile_mark(int32_t node);",
        "#endif",
        "",
        f"#endif /* {u}_H */",
        "",
    ]
    return "\n".join(lines)


def _output_scale_comment(graph: Graph, limit: int = 64) -> list[str]:
    scales = graph.meta.get("output_scales")
    if not isinstance(scales, dict):
        return []
    lines = []
    for i, v in enumerate(graph.outputs):
        vals = scales.get(v)
        if vals is None or len(vals) > limit:
            continue
        text = ", ".join(f"{float(x):.6g}" for x in vals)
        lines.append(f" * S (output {i}): {text}")
    return lines


def _source(graph: Graph, plan: Plan, name: str, host: Plan | None = None) -> str:
    host = host or plan
    if [a.ident for a in host.arrays] != [a.ident for a in plan.arrays] or host.param_decls != plan.param_decls:
        raise AssertionError("fused and unfused schedules must share their constants")
    out = [
        f"/* {name}.c: generated by snncc from model {sanitize_name(graph.name)}. Do not edit. */",
        f'#include "{name}.h"',
        '#include "snncc_kernels.h"',
        "",
        "#include <stddef.h>",
        "",
    ]
    for arr in plan.arrays:
        out.append(f"extern const {arr.ctype} {name}_{arr.ident}[{arr.length}];")
    out.append("")
    for decl in plan.param_decls:
        out.append(decl)
    out += [
        "",
        f"int {name}_run_ctx({name}_ctx_t *ctx, const int8_t *input, int32_t *output)",
        "{",
        "    uint8_t *arena;",
        "    int32_t t;",
        "    if (ctx == NULL || input == NULL || output == NULL) {",
        "        return -1;",
        "    }",
        "    arena = (uint8_t *)ctx->arena;",
        "    (void)arena;",
    ]
    out.append("#if defined(SNNCC_ROW_FUSION)")
    out += _schedule(plan, name)
    out.append("#else")
    out += _schedule(host, name)
    out.append("#endif")
    out += [
        "    return 0;",
        "}",
        "",
        f"int {name}_run(const int8_t *input, int32_t *output)",
        "{",
        f"    static {name}_ctx_t ctx;",
        f"    return {name}_run_ctx(&ctx, input, output);",
        "}",
        "",
    ]
    return "\n".join(out)


def _schedule(plan: Plan, name: str) -> list[str]:
    out = ["    " + _render(line, plan, name) for line in plan.prologue]
    out.append(f"    for (t = 0; t < {plan.timesteps}; ++t) {{")
    for step in plan.steps:
        out += ["        " + _render(line, plan, name) for line in step.code]
    out.append("    }")
    return out


_PLACEHOLDER = re.compile(r"@(B|W)(\d+)(?::(\w+))?@")


def _render(line: str, plan: Plan, name: str) -> str:
    """Replace buffer placeholders (@B3:int8_t@) by arena pointers, @W5@ by array names."""
    def sub(m: re.Match) -> str:
        idx = int(m.group(2))
        if m.group(1) == "W":
            return f"{name}_{plan.arrays[idx].ident}"
        buf = plan.buffers[idx]
        ctype = m.group(3)
        if buf.external:
            return buf.external
        return f"(({ctype} *)(arena + {buf.offset}))"
    line = _PLACEHOLDER.sub(sub, line).replace("@DEBUG_HOOK@", f"{name}_debug_dump")
    return line.replace("@PROFILE_HOOK@", f"{name}_profile_mark")


def _weights(plan: Plan, name: str) -> str:
    out = [
        f"/* {name}_weights.c: generated by snncc. Do not edit.  Constant data (flash). */",
        "#include <stdint.h>",
        "",
    ]
    for arr in plan.arrays:
        out.append(f"/* {arr.comment} */")
        out.append(f"extern const {arr.ctype} {name}_{arr.ident}[{arr.length}];")
        out.append(f"const {arr.ctype} {name}_{arr.ident}[{arr.length}] = {{")
        out.append(_format_values(arr.values))
        out.append("};")
        out.append("")
    return "\n".join(out)


def _format_values(values: np.ndarray, per_line: int = 24, lines_at_once: int = 4096) -> str:
    """The values as C initializer lines, ``per_line`` a line.  Python objects for a few thousand
    lines at a time (one int and one str a value cost about 90 bytes: a 4-million-weight layer
    took 370 MiB at once, past --max-memory); only the text itself is kept."""
    flat = np.asarray(values).reshape(-1).astype(np.int64)
    step = per_line * lines_at_once
    parts = []
    for start in range(0, len(flat), step):
        text = [str(v) for v in flat[start:start + step].tolist()]
        text = [L.INT32_MIN_C if s == "-2147483648" else s for s in text]
        parts.append("\n".join("    " + ", ".join(text[i:i + per_line]) + "," for i in range(0, len(text), per_line)))
    return "\n".join(parts)

