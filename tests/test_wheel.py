"""The wheel works on its own: build it, install it into a fresh venv, run it from outside.

``python -m build`` (sdist, then the wheel from the sdist) runs on a copy of the source
tree; the wheel is installed into a new virtual environment with nothing but its own
dependency (numpy), and every command runs with the working directory outside the
checkout, so nothing can be imported from the source tree. Checked: the package data
(TensorRT operator list, the C header) is in the wheel, ``reclnet --help``, ``reclnet
eval`` on tiny data, ``reclnet.export.tensorrt_check``, no data default pointing into a
source tree, and C code compiled against the installed header
(``reclnet.runtime.postproc.get_include()``): a plain C file and the PyCapsule client
extension, which then drives the installed core.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reclnet.paths import source_checkout

ROOT = source_checkout()
CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
CAPSULE_CLIENT = Path(__file__).parent / "runtime" / "postproc" / "capsule_client.c"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(ROOT is None, reason="needs a source checkout to build from"),
]

# Build products and caches: never part of what the wheel is built from.
_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.so",
    "*.o",
    "_core.c",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "out",
    "demo_out",
    "demo-output",
)


def run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"{proc.args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def copy_sources(dst: Path) -> None:
    """The files git would commit (tracked or new, not ignored), else a filtered copy."""
    git = shutil.which("git")
    listed = None
    if git is not None and (ROOT / ".git").exists():
        proc = subprocess.run(
            [git, "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            timeout=60,
        )
        if proc.returncode == 0:
            listed = [p for p in proc.stdout.decode().split("\0") if p]
    if listed is None:
        shutil.copytree(ROOT, dst, ignore=_IGNORE)
        return
    for rel in listed:
        src = ROOT / rel
        if src.is_file():  # listed but deleted in the working tree: skip
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """A clean environment: no data folder, no path into the checkout, no active venv."""
    out = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "RECLNET_DATA", "VIRTUAL_ENV", "PYTHONHOME")
    }
    out["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    pytest.importorskip("build", reason="`build` (dev extra) builds the wheel")
    work = tmp_path_factory.mktemp("wheel_build")
    src = work / "src"
    copy_sources(src)
    dist = work / "dist"
    # --no-isolation: build with this environment's setuptools, Cython and numpy (offline).
    ok(
        run(
            [sys.executable, "-m", "build", "--no-isolation", "-o", str(dist), str(src)],
            cwd=work,
            env=env,
            timeout=600,
        )
    )
    (found,) = dist.glob("reclnet-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """A fresh venv holding only the wheel and what it depends on."""
    home = tmp_path_factory.mktemp("wheel_venv")
    ok(run([sys.executable, "-m", "venv", str(home / "venv")], cwd=home, env=env))
    py = home / "venv" / "bin" / "python"
    ok(run([str(py), "-m", "pip", "install", "-q", str(wheel)], cwd=home, env=env, timeout=600))
    return home / "venv"


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A working directory outside the source tree."""
    assert ROOT not in tmp_path.resolve().parents
    return tmp_path


def test_wheel_holds_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "reclnet/export/tensorrt_supported_ops.txt" in names
    assert "reclnet/runtime/postproc/include/reclnet/postproc.h" in names
    assert any(n.startswith("reclnet/runtime/postproc/_core.") and n.endswith(".so") for n in names)
    assert "reclnet/runtime/offline/safe_pickle.py" in names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"reclnet", "-".join(wheel.name.split("-")[:2]) + ".dist-info"}
    header = zipfile.ZipFile(wheel).read("reclnet/runtime/postproc/include/reclnet/postproc.h")
    assert header == (ROOT / "csrc" / "include" / "reclnet" / "postproc.h").read_bytes()


def test_installed_commands_run_outside_the_tree(venv: Path, outside: Path, env: dict) -> None:
    py, reclnet = str(venv / "bin" / "python"), str(venv / "bin" / "reclnet")
    where = ok(
        run(
            [
                py,
                "-c",
                "import reclnet, reclnet.paths as p; print(reclnet.__file__); "
                "print(p.source_checkout(), p.data_dir())",
            ],
            cwd=outside,
            env=env,
        )
    ).splitlines()
    assert Path(where[0]).resolve().is_relative_to(venv.resolve())
    assert where[1] == "None None"  # no data default without --data / RECLNET_DATA
    usage = ok(run([reclnet, "--help"], cwd=outside, env=env))
    assert all(name in usage for name in ("train", "eval", "stream", "demo"))
    ops = ok(run([py, "-m", "reclnet.export.tensorrt_check", "--list"], cwd=outside, env=env))
    assert ops.startswith("# ") and "TensorRT 10" in ops.splitlines()[0]
    assert {"Conv", "Gemm", "MatMul"} <= set(ops.splitlines()[1:])

    tube = {"video": "v", "label": 0, "tube": [[f, 10, 10, 50, 60] for f in range(5)]}
    other = {"video": "w", "label": 1, "tube": [[f, 0, 0, 20, 20] for f in range(3, 9)]}
    (outside / "gt.jsonl").write_text(json.dumps(tube) + "\n" + json.dumps(other) + "\n")
    dets = [dict(tube, score=0.9), dict(other, score=0.2, video="v")]
    (outside / "det.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dets))
    args = [reclnet, "eval", "--gt", "gt.jsonl", "--detections", "det.jsonl", "--json", "r.json"]
    table = ok(run(args, cwd=outside, env=env))
    assert "mAP" in table
    res = json.loads((outside / "r.json").read_text())
    assert [c["ap"]["0.5"] for c in res["classes"]] == [100.0, 0.0]
    assert res["mAP"]["0.5"] == 50.0

    # Dataset names need a data folder: none by default, --data or RECLNET_DATA otherwise.
    named = [reclnet, "eval", "--gt", "ucf101-24", "--detections", "det.jsonl"]
    proc = run(named, cwd=outside, env=env)
    assert proc.returncode == 2 and "no data folder" in proc.stderr, proc.stderr
    proc = run([*named, "--data", str(outside / "d")], cwd=outside, env=env)
    expected = outside / "d" / "ucf101-24" / "pyannot_with_class_names.pkl"
    assert proc.returncode == 2 and str(expected) in proc.stderr, proc.stderr
    proc = run(named, cwd=outside, env=env | {"RECLNET_DATA": str(outside / "e")})
    assert proc.returncode == 2 and str(outside / "e" / "ucf101-24") in proc.stderr


@pytest.mark.skipif(CC is None, reason="no C compiler (cc/gcc) on PATH")
def test_c_code_compiles_against_the_installed_header(venv: Path, outside: Path, env: dict) -> None:
    py = str(venv / "bin" / "python")
    info = ok(
        run(
            [
                py,
                "-c",
                "import sysconfig, reclnet.runtime.postproc as p; print(p.get_include()); "
                "print(sysconfig.get_paths()['include']); print(sysconfig.get_config_var('EXT_SUFFIX'))",
            ],
            cwd=outside,
            env=env,
        )
    ).splitlines()
    include, py_include, suffix = info
    assert Path(include).resolve().is_relative_to(venv.resolve())
    (outside / "uses_header.c").write_text(
        "#include <reclnet/postproc.h>\n"
        "int reclnet_header_ok(void) { return (int)sizeof(rpp_event) + RPP_API_VERSION; }\n"
    )
    ok(
        run(
            [CC, "-std=c99", "-Wall", "-Werror", "-c", "-I", include, "uses_header.c"],
            cwd=outside,
            env=env,
        )
    )
    if not (Path(py_include) / "Python.h").is_file():
        pytest.skip(f"Python headers not installed ({py_include}/Python.h missing)")
    target = outside / f"capsule_client{suffix}"
    cmd = [
        CC,
        "-shared",
        "-fPIC",
        "-O2",
        "-I",
        py_include,
        "-I",
        include,
        str(CAPSULE_CLIENT),
        "-o",
        str(target),
    ]
    ok(run(cmd, cwd=outside, env=env))
    # The extension finds the installed core through its capsule and matches its Python face.
    script = (
        "import numpy as np, capsule_client\n"
        "from reclnet.runtime.postproc import causal_median\n"
        "x = np.random.default_rng(3).random((50, 4), dtype=np.float32)\n"
        "medians, events = capsule_client.run(x.tobytes(), 50, 4, 7, 3, 0.5)\n"
        "got = np.frombuffer(medians, np.float32).reshape(50, 4)\n"
        "assert np.array_equal(got, causal_median(x, 7, 3))\n"
        "print('capsule ok', len(events))\n"
    )
    assert ok(run([py, "-c", script], cwd=outside, env=env)).startswith("capsule ok")
