"""Build and run the emitted C on the host, and compare it with the integer runtime.

``compare_c`` is the core of ``snncc verify --target c``: it compiles the emitted
library with the host compiler, runs every sample, compares every output integer
with the golden model (``run_int``), and on a mismatch rebuilds with
``-DSNNCC_DEBUG`` to find the first node whose output diverges.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.signals import run_child

STRICT_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]


def library_name(out_dir: Path) -> str:
    """The model name of an emitted folder (from its ``<name>_weights.c``)."""
    found = sorted(Path(out_dir).glob("*_weights.c"))
    if len(found) != 1:
        raise SnnccError(f"{out_dir} does not hold one emitted C model (no single *_weights.c)")
    return found[0].name[: -len("_weights.c")]


def find_compiler(cc: str) -> str:
    path = shutil.which(cc)
    if path is None:
        raise SnnccError(f": C compiler {cc!r} not found; install gcc or pass --cc", option="cc")
    return path


def build_host(out_dir: Path, *, cc: str = "cc", debug: bool = False, sanitize: bool = False,
               opt: str = "-O2", build_dir: Path | None = None) -> Path:
    """Compile the emitted library and ``main_host.c`` into an executable; return its path.

    The executable goes to ``build_dir`` (default ``out_dir/build``).  ``opt`` may hold
    several flags (``"-O3 -march=native"``).
    """
    out_dir = Path(out_dir)
    name = library_name(out_dir)
    compiler = find_compiler(cc)
    build_dir = Path(build_dir) if build_dir is not None else out_dir / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    suffix = ("_debug" if debug else "") + ("_san" if sanitize else "") + opt.replace("-", "_").replace(" ", "")
    suffix = suffix.replace("=", "")
    exe = build_dir / f"{name}_host{suffix}"
    srcs = [out_dir / f for f in (f"{name}.c", f"{name}_weights.c", "snncc_kernels.c", "main_host.c")]
    cmd = [compiler, *STRICT_FLAGS, *opt.split()]
    if debug:
        cmd.append("-DSNNCC_DEBUG")
    if sanitize:
        cmd += SANITIZE_FLAGS
    cmd += ["-I", str(out_dir), *map(str, srcs), "-o", str(exe)]
    proc = run_child(cmd)
    if proc.returncode != 0:
        raise SnnccError(f"C compilation failed ({' '.join(cmd[:1] + cmd[1:8])} ...):\n{proc.stderr[-4000:]}")
    if not exe.is_file():
        raise SnnccError(f": C compiler {cc!r} exited 0 but wrote no executable {exe.name}", option="cc")
    return exe


def run_host(exe: Path, x_q: np.ndarray, *, dump: bool = False,
             bench_iters: int = 0) -> np.ndarray | tuple[np.ndarray, object]:
    """Run the host executable on int8 samples (N, *shape); return int32 outputs (N, OUT).

    With ``dump`` (a debug build) also return the per-node dumps: a list, per
    sample, of {node index: int64 array}.  With ``bench_iters`` return
    (outputs, {"wall_ns": ..., "cpu_ns": ..., "simd": ...}) per inference, timed inside
    the program over ``bench_iters`` runs (process CPU time is robust on a busy host);
    ``simd`` names the kernels the build ran (``snncc_simd()``).
    """
    x_q = np.ascontiguousarray(x_q, dtype=np.int8)
    n = x_q.shape[0]
    with tempfile.TemporaryDirectory(prefix="snncc-run-") as tmp:
        tmp = Path(tmp)
        (tmp / "in.bin").write_bytes(x_q.tobytes())
        cmd = [str(exe), str(tmp / "in.bin"), str(tmp / "out.bin")]
        if dump:
            cmd += ["--dump", str(tmp / "dump.bin")]
        if bench_iters:
            cmd += ["--bench", str(int(bench_iters))]
        proc = run_child(cmd)
        if proc.returncode != 0:
            raise SnnccError(f"emitted C program failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        out = np.fromfile(tmp / "out.bin", dtype="<i4").reshape(n, -1)
        if dump:
            return out, _parse_dump((tmp / "dump.bin").read_bytes(), n)
        if bench_iters:
            words = proc.stdout.split()
            return out, {"wall_ns": float(words[words.index("ns_per_inference") + 1]),
                         "cpu_ns": float(words[words.index("cpu_ns_per_inference") + 1]),
                         "simd": words[words.index("simd") + 1]}
        return out


def _parse_dump(data: bytes, n: int) -> list[dict[int, np.ndarray]]:
    words = np.frombuffer(data, dtype="<i4")
    samples: list[dict[int, np.ndarray]] = []
    pos, current, last = 0, {}, -1
    while pos < len(words):
        node, count = int(words[pos]), int(words[pos + 1])
        if node <= last:  # node indices restart: next sample
            samples.append(current)
            current = {}
        current[node] = words[pos + 2: pos + 2 + count].astype(np.int64)
        last = node
        pos += 2 + count
    samples.append(current)
    return samples


@dataclass
class CompareResult:
    ok: bool
    samples: int
    outputs: int
    mismatches: int = 0  # number of samples with at least one wrong output
    first_sample: int | None = None
    first_output: int | None = None
    expected: int | None = None
    got: int | None = None
    diverging_node: str | None = None  # first node whose output differs (debug build)
    diverging_op: str | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.ok:
            return f"C == integer runtime: {self.samples} samples x {self.outputs} outputs bit-exact"
        msg = (f"C differs from the integer runtime on {self.mismatches}/{self.samples} samples; first: sample "
               f"{self.first_sample}, output {self.first_output}: expected {self.expected}, got {self.got}")
        if self.diverging_node is not None:
            msg += f"; first diverging node {self.diverging_node!r} ({self.diverging_op})"
        return msg


def reference_outputs(graph: Graph, x_q: np.ndarray, capture=()) -> dict:
    from snncc.sim.int_runtime import run_int

    return run_int(graph, x_q, capture=capture)


def flat_outputs(graph: Graph, res: dict) -> np.ndarray:
    n = np.asarray(res[graph.outputs[0]]).shape[0]
    return np.concatenate([np.asarray(res[v]).reshape(n, -1).astype(np.int64) for v in graph.outputs], axis=1)


def compare_c(graph: Graph, out_dir: Path, x_q: np.ndarray, *, cc: str = "cc", exe: Path | None = None,
              expected: np.ndarray | None = None, locate: bool = True) -> CompareResult:
    """Run the emitted C on ``x_q`` and compare every output with ``run_int``.

    ``expected`` (N, OUT) may be passed to skip the reference run.  On a mismatch
    and with ``locate``, a debug build dumps every node of the first bad sample and
    the first node that differs from the runtime's capture is reported.
    """
    x_q = np.asarray(x_q, dtype=np.int8)
    if exe is None:
        exe = build_host(out_dir, cc=cc)
    got = run_host(exe, x_q).astype(np.int64)
    if expected is None:  # in chunks: a 10,000-sample reference run at once took 5.5 GB
        from snncc.verify_parts import chunks

        expected = np.concatenate([flat_outputs(graph, reference_outputs(graph, xc)) for xc in chunks(x_q)])
    expected = np.asarray(expected, dtype=np.int64).reshape(got.shape)
    bad = np.argwhere(got != expected)
    res = CompareResult(ok=len(bad) == 0, samples=int(x_q.shape[0]), outputs=int(got.shape[1]))
    if res.ok:
        return res
    s, o = (int(v) for v in bad[0])
    res.mismatches = len(np.unique(bad[:, 0]))
    res.first_sample, res.first_output = s, o
    res.expected, res.got = int(expected[s, o]), int(got[s, o])
    if locate:
        node = first_diverging_node(graph, out_dir, x_q[s:s + 1], cc=cc)
        if node is not None:
            res.diverging_node, res.diverging_op = node.name, node.op
    return res


def first_diverging_node(graph: Graph, out_dir: Path, x1: np.ndarray, *, cc: str = "cc"):
    """The first node (in schedule order) whose last-timestep output differs."""
    exe = build_host(out_dir, cc=cc, debug=True)
    _, dumps = run_host(exe, x1, dump=True)
    capture = [n.output for n in graph.nodes]
    ref = reference_outputs(graph, x1, capture=capture)
    for i, node in enumerate(graph.nodes):
        if i not in dumps[0] or node.output not in ref:
            continue
        want = np.asarray(ref[node.output]).reshape(-1).astype(np.int64)
        if node.output in graph.outputs and int(graph.meta.get("timesteps", 1)) > 1:
            continue  # captures of outputs may be accumulated; compared via the outputs
        if want.shape != dumps[0][i].shape or np.any(want != dumps[0][i]):
            return node
    return None


# --- firmware: Cortex-M4 under qemu -------------------------------------------------

ARM_CC = "arm-none-eabi-gcc"
ARM_SIZE = "arm-none-eabi-size"
QEMU = "qemu-system-arm"
ARM_INSTALL = "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb"]


def _need_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SnnccError(f"{tool!r} not found; install the firmware tools: {ARM_INSTALL}")
    return path


def _firmware_file(fname: str, name: str) -> str:
    from importlib import resources

    text = resources.files("snncc.backends.c").joinpath("firmware", fname).read_text(encoding="utf-8")
    return text.replace("@NAME@", name).replace("@UNAME@", name.upper())


def build_firmware(out_dir: Path, *, opt: str = "-O2", build_dir: Path | None = None, cpu: str = "cortex-m4",
                   main: str = "main_fw.c", defines: tuple[str, ...] = (), tag: str = "") -> Path:
    """Cross-compile the emitted library with the snncc startup, linker script and a
    semihosting test main (``main``: ``main_fw.c``, or ``main_bench.c`` which also counts
    instructions) for the mps2-an386 board (``cpu``: cortex-m4, or cortex-m3 for the
    portable path); return the ELF.  A link map is written next to it (``.map``)."""
    out_dir = Path(out_dir)
    name = library_name(out_dir)
    cc = _need_tool(ARM_CC)
    build_dir = Path(build_dir) if build_dir is not None else out_dir / "build" / "firmware"
    build_dir.mkdir(parents=True, exist_ok=True)
    for fname in ("mps2_an386.ld", "startup.c", main):
        (build_dir / fname).write_text(_firmware_file(fname, name), encoding="utf-8")
    elf = build_dir / f"{name}{tag}.elf"
    srcs = [out_dir / f"{name}.c", out_dir / f"{name}_weights.c", out_dir / "snncc_kernels.c",
            build_dir / "startup.c", build_dir / main]
    flags = [f"-mcpu={cpu}", "-mthumb", *opt.split(), *STRICT_FLAGS, *(f"-D{d}" for d in defines),
             "-ffunction-sections", "-fdata-sections", "-I", str(out_dir)]
    objs = []
    for src in srcs:  # one object per source, so that the link map names the library's own
        obj = build_dir / f"{src.stem}{tag}.o"
        _run_arm([cc, *flags, "--specs=rdimon.specs", "-c", str(src), "-o", str(obj)])
        objs.append(obj)
    _run_arm([cc, *flags, "-nostartfiles", "-T", str(build_dir / "mps2_an386.ld"), "--specs=rdimon.specs",
              "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}", *map(str, objs), "-o", str(elf),
              "-lc", "-lrdimon"])
    return elf


def _run_arm(cmd: list[str]) -> None:
    proc = run_child(cmd)
    if proc.returncode != 0:
        raise SnnccError(f"firmware build failed:\n{proc.stderr[-4000:]}")


_MAP_SECTION = re.compile(r"^ (\.[\w.$]+|COMMON)(?:\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+))?\s*$")
_MAP_PLACE = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)\s*$")


def map_sizes(map_path: Path, objects: tuple[str, ...]) -> dict:
    """Linked bytes of the objects whose file names end with one of ``objects``, from a
    GNU ld map (after --gc-sections): flash = text + rodata + data, RAM = data + bss."""
    sizes = {"text": 0, "data": 0, "bss": 0}
    lines = Path(map_path).read_text(encoding="utf-8", errors="replace").splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("Linker script and memory map")), 0)
    pending = None
    for ln in lines[start:]:
        m = _MAP_SECTION.match(ln)
        if m:
            pending = m.group(1)
            if m.group(4) is None:
                continue
            size, obj = int(m.group(3), 16), m.group(4)
        else:
            p = _MAP_PLACE.match(ln)
            if pending is None or p is None:
                pending = None
                continue
            size, obj = int(p.group(2), 16), p.group(3)
        sec, pending = pending, None
        if not obj.endswith(objects) or int(size) == 0:
            continue
        if sec.startswith((".text", ".rodata")):
            sizes["text"] += size
        elif sec.startswith(".data"):
            sizes["data"] += size
        elif sec.startswith((".bss", "COMMON")):
            sizes["bss"] += size
    sizes["flash_bytes"] = sizes["text"] + sizes["data"]
    sizes["ram_bytes"] = sizes["data"] + sizes["bss"]
    return sizes


def run_qemu(elf: Path, x_q: np.ndarray, *, timeout: float = 300.0, icount: bool = False,
             log: list[str] | None = None) -> np.ndarray:
    """Run the firmware ELF under qemu (mps2-an386, semihosting) on int8 samples;
    return its int32 outputs (N, OUT).  ``icount`` runs with ``-icount shift=0`` (one
    nanosecond of virtual time per instruction); ``log`` receives the program's stdout."""
    qemu = _need_tool(QEMU)
    x_q = np.ascontiguousarray(x_q, dtype=np.int8)
    n = x_q.shape[0]
    with tempfile.TemporaryDirectory(prefix="snncc-qemu-") as tmp:
        tmp = Path(tmp)
        (tmp / "input.bin").write_bytes(x_q.tobytes())
        cmd = [qemu, "-M", "mps2-an386", "-nographic", "-semihosting", "-monitor", "none",
               *(["-icount", "shift=0"] if icount else []), "-kernel", str(Path(elf).resolve())]
        try:
            proc = run_child(cmd, cwd=tmp, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SnnccError(f"firmware did not finish under qemu within {timeout:.0f} s") from None
        if proc.returncode != 0 or not (tmp / "output.bin").exists():
            raise SnnccError(f"firmware failed under qemu (exit {proc.returncode}): "
                             f"{(proc.stdout + proc.stderr).strip()[-2000:]}")
        out = np.fromfile(tmp / "output.bin", dtype="<i4")
        if log is not None:
            log.append(proc.stdout)
    if out.size % max(n, 1):
        raise SnnccError(f"firmware wrote {out.size} outputs for {n} samples")
    return out.reshape(n, -1)


def firmware_size(out_dir: Path, elf: Path, *, opt: str = "-O2") -> dict:
    """Flash and RAM bytes from ``arm-none-eabi-size``: the whole ELF, and the library
    alone (the model's three objects, compiled on their own)."""
    size_tool = _need_tool(ARM_SIZE)
    cc = _need_tool(ARM_CC)
    out_dir = Path(out_dir)
    name = library_name(out_dir)
    objs = []
    obj_dir = Path(elf).parent / "lib_objects"
    obj_dir.mkdir(exist_ok=True)
    for src in (f"{name}.c", f"{name}_weights.c", "snncc_kernels.c"):
        obj = obj_dir / (src[:-2] + ".o")
        cmd = [cc, *ARM_FLAGS, opt, *STRICT_FLAGS, "-I", str(out_dir), "-c", str(out_dir / src), "-o", str(obj)]
        proc = run_child(cmd)
        if proc.returncode != 0:
            raise SnnccError(f"firmware object build failed:\n{proc.stderr[-4000:]}")
        objs.append(obj)

    def sizes(paths) -> dict:
        proc = run_child([size_tool, "-t", *map(str, paths)])
        if proc.returncode != 0:
            raise SnnccError(f"{ARM_SIZE} failed: {proc.stderr.strip()[-2000:]}")
        text, data, bss = (int(v) for v in proc.stdout.strip().splitlines()[-1].split()[:3])
        return {"text": text, "data": data, "bss": bss, "flash_bytes": text + data, "ram_bytes": data + bss}

    return {"elf": sizes([elf]), "library": sizes(objs)}
