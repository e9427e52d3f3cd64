"""Sweeps and verify on Ray (issue 19), against a real Ray cluster.

A module-scoped local cluster runs as a child process (``ray start --head --block`` on
127.0.0.1, a free port, a temporary folder, 2 CPUs, token authentication with a token of
its own); it is ended by its process group (snncc.signals.end_group), never by
``ray stop``, which would end every Ray process on the machine.  Points are kept cheap:
48 calibration samples, no threshold search, nearest rounding.  Without Ray installed
these tests fail with the install command.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from snncc.cluster import BLAS_THREADS
from snncc.signals import end_group

# One pytest-xdist worker runs this whole module (--dist loadgroup, pyproject.toml): one cluster.
pytestmark = pytest.mark.xdist_group("ray_cluster")

TESTS = Path(__file__).resolve().parent
INSTALL = "pip install -e '.[ray]' (or: bash .ci/setup)"
GRID = ["--levels", "2,4", "--weight-bits", "4,8", "--weight-quantizer", "max,mse"]  # 2x2x2


def _ray_cli() -> str:
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.fail(f"ray is not installed: {INSTALL}")
    exe = Path(sys.executable).with_name("ray")
    if not exe.is_file():
        pytest.fail(f"the ray command is not next to {sys.executable}: {INSTALL}")
    return str(exe)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def small(tmp_path_factory, digits_example):
    """The digits model with 48 calibration samples and fast point options."""
    folder = tmp_path_factory.mktemp("ray_small")
    data = np.load(digits_example.calib_path)
    np.savez(folder / "calib48.npz", x=data["x"][:48], y=data["y"][:48])
    (folder / "fast.toml").write_text('[convert]\nthreshold_search = "none"\n[quantize]\nweight_rounding = "nearest"\n',
                                      encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def ray_env():
    """The environment of the cluster and its drivers: one token, and this folder importable by workers.

    Also set in this process (for the in-process driver) before ray is first imported: Ray
    reads its authentication settings once.
    """
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(auth, PYTHONPATH=os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.update({k: "1" for k in BLAS_THREADS})  # the cluster's workers: one BLAS thread, as the local pool's
    with pytest.MonkeyPatch.context() as mp:
        for key, value in auth.items():
            mp.setenv(key, value)
        _ray_cli()
        yield env


@pytest.fixture(scope="module")
def ray_cluster(ray_env):
    """A local Ray cluster in a child process; yields its address."""
    tmp = tempfile.mkdtemp(prefix="snncc-rt-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    log = open(Path(tmp) / "ray_start.log", "w+b")
    cmd = [_ray_cli(), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
           f"--temp-dir={tmp}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
           "--object-store-memory=100000000"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=ray_env)
    try:
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in Path(log.name).read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start did not come up:\n" + Path(log.name).read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        end_group(proc, grace=2.0)
        log.close()
        left = _processes_mentioning(tmp)
        for pid in left:  # started outside the group: end them by id, then fail
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"Ray processes outlived the cluster's process group: {left}"


def _snncc(args, env, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "snncc", *map(str, args)], capture_output=True, text=True, env=env,
                         timeout=600, **kw)
    return res


def _sweep(small, digits_example, out, *extra, env):
    res = _snncc(["sweep", digits_example.onnx_path, "--calib", small / "calib48.npz", "--config", small / "fast.toml",
                  "-o", out, *extra], env)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _data_lines(path: Path) -> list[str]:
    return (path / "sweep.csv").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def local_sweep(small, digits_example, ray_env, tmp_path_factory):
    """The 2x2x2 sweep with the local executor (2 processes: one BLAS thread each, as Ray's workers)."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    _sweep(small, digits_example, out, *GRID, "-j", "2", env=ray_env)
    return out


@pytest.mark.slow
def test_ray_cluster_sweep_matches_local_and_resumes(small, digits_example, ray_cluster, ray_env, local_sweep,
                                                     tmp_path):
    out = tmp_path / "ray"
    res = _sweep(small, digits_example, out, *GRID, "--executor", "ray", "--ray-address", ray_cluster, env=ray_env)
    assert f"8 to run on Ray ({ray_cluster})" in res.stdout
    local = _data_lines(local_sweep)
    assert len(local) == 9 and all(line.endswith(",") for line in local[1:])  # 8 points, no error
    assert sorted(_data_lines(out)) == sorted(local)

    # half the rows lost (as if the sweep had been stopped): --resume runs only those
    lines = _data_lines(out)
    (out / "sweep.csv").write_text("\n".join([lines[0], *lines[1::2]]) + "\n", encoding="utf-8")
    res = _sweep(small, digits_example, out, *GRID, "--executor", "ray", "--ray-address", ray_cluster, "--resume",
                 env=ray_env)
    assert "8 points, 4 already in" in res.stdout and "4 to run on Ray" in res.stdout
    assert sorted(_data_lines(out)) == sorted(local)
    assert sorted(p.name for p in out.iterdir()) == ["sweep.csv", "sweep_pareto.png", "sweep_table.txt"]


@pytest.mark.slow
def test_on_demand_local_ray_cluster(small, digits_example, ray_env, local_sweep, tmp_path):
    """--executor ray without an address starts a local cluster for the sweep, and leaves nothing behind."""
    tmpdir = Path(tempfile.mkdtemp(prefix="snncc-td-", dir="/tmp"))  # short: Ray's socket paths
    try:
        env = {**ray_env, "TMPDIR": str(tmpdir)}
        out = tmp_path / "ondemand"
        res = _sweep(small, digits_example, out, "--levels", "2", "--weight-bits", "4,8", "--weight-quantizer", "mse",
                     "--executor", "ray", "-j", "2", env=env)
        assert "a local cluster started for the sweep" in res.stdout
        assert list(tmpdir.iterdir()) == [] and not _processes_mentioning(str(tmpdir))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    # the same figures as those points in the full local sweep (the Pareto marks depend on the set)
    def rows(path):
        return {tuple(r[k] for k in ("levels", "weight_bits", "weight_quantizer")):
                {k: v for k, v in r.items() if not k.startswith("pareto")}
                for r in csv.DictReader(io.StringIO((path / "sweep.csv").read_text(encoding="utf-8")))}
    got, want = rows(out), rows(local_sweep)
    assert len(got) == 2 and all(got[k] == want[k] for k in got)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_dying_worker_loses_only_its_point(executor, small, digits_example, ray_env, tmp_path, request):
    """N=4 kills its worker process, N=8 raises: N=2 still finishes, both failures are rows, and
    --resume runs the dead point again (not the one that raised: that is deterministic)."""
    import sweep_points

    from snncc.sweep import compile_point, run_sweep

    kw = {}
    if executor == "ray":
        kw = {"executor": "ray", "ray_address": request.getfixturevalue("ray_cluster")}
    out = tmp_path / "out"
    base = {"threshold_search": "none", "weight_rounding": "nearest"}
    rows = run_sweep(digits_example.onnx_path, small / "calib48.npz", {"levels": [2, 4, 8], "weight_bits": [8]}, 2,
                     out, base_options=base, echo=lambda _m: None, point_fn=sweep_points.dies_or_raises, **kw)
    by_level = {r["levels"]: r for r in rows}
    assert by_level[2]["error"] == "" and by_level[2]["snn_accuracy"] is not None
    assert by_level[4]["error"].startswith("worker died: ") and by_level[4].get("snn_accuracy") is None
    assert by_level[8]["error"] == "internal error: RuntimeError: a bug at N=8"
    written = {r["levels"]: r for r in csv.DictReader(io.StringIO((out / "sweep.csv").read_text(encoding="utf-8")))}
    assert written["4"]["error"].startswith("worker died: ") and written["2"]["error"] == ""

    said = []
    rows = run_sweep(digits_example.onnx_path, small / "calib48.npz", {"levels": [2, 4, 8], "weight_bits": [8]}, 2,
                     out, base_options=base, echo=said.append, point_fn=compile_point, resume=True, **kw)
    assert any("3 points, 2 already in" in line and "1 to run" in line for line in said), said
    assert {r["levels"]: r["error"] for r in rows} == {2: "", 4: "", 8: "internal error: RuntimeError: a bug at N=8"}


@pytest.mark.slow
def test_sharded_verify_matches_local(small, digits_example, ray_cluster, ray_env):
    """verify --executor ray on the 540 digits samples (5 chunks, 2 shards): the same lines as local."""
    args = ["verify", digits_example.onnx_path, "--target", "c", "--calib", small / "calib48.npz", "--config",
            small / "fast.toml", "--data", digits_example.calib_path]
    local = _snncc(args, ray_env)
    sharded = _snncc([*args, "--executor", "ray", "--ray-address", ray_cluster], ray_env)
    assert local.returncode == 0 and sharded.returncode == 0, local.stdout + local.stderr + sharded.stderr
    assert "on 2 shard(s) of 540 samples on Ray" in sharded.stderr
    assert sharded.stdout == local.stdout
    assert "5400 outputs of 540 samples bit-exact" in sharded.stdout and "verify: PASSED" in sharded.stdout


def test_executor_ray_without_ray_names_the_extra(monkeypatch, digits_example, tmp_path):
    from click.testing import CliRunner

    from snncc.cli import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    for args in (["sweep", str(digits_example.onnx_path), "--executor", "ray", "-o", str(tmp_path / "s")],
                 ["verify", str(digits_example.onnx_path), "--executor", "ray"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2 and res.output == ("error: option --executor ray needs Ray, an optional extra: "
                                                     "pip install 'snncc[ray]'\n"), res.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_sigterm_keeps_finished_points_for_resume(executor, small, digits_example, ray_env, local_sweep, tmp_path,
                                                  request):
    """SIGTERM mid-sweep: exit 143 with one error line naming what is kept, whole CSV lines only,
    no worker left; --resume then completes the same CSV as an uninterrupted sweep."""
    extra = ["-j", "2"]
    if executor == "ray":
        extra = ["--executor", "ray", "--ray-address", request.getfixturevalue("ray_cluster")]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "snncc", "sweep", str(digits_example.onnx_path), "--calib", str(small / "calib48.npz"),
           "--config", str(small / "fast.toml"), "-o", str(out), *GRID, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ray_env,
                            start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith("[1/8]"):
                break
        proc.terminate()
        _, err = proc.communicate(timeout=120)
    finally:
        end_group(proc, grace=0)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == (f"error: interrupted by SIGTERM; the finished points are kept in "
                                            f"{out}/sweep.csv (run again with --resume)"), err
    lines = _data_lines(out)
    assert 2 <= len(lines) <= 9 and all(line in _data_lines(local_sweep) or line.endswith(",")
                                        for line in lines[1:])
    assert not _processes_mentioning(str(out))
    _sweep(small, digits_example, out, *GRID, *extra, "--resume", env=ray_env)
    assert sorted(_data_lines(out)) == sorted(_data_lines(local_sweep))
