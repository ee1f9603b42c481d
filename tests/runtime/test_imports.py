"""Every reclnet.runtime submodule imports with torch, tensorrt, pycuda and cuda unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import importlib, importlib.util, json, pkgutil, sys

BLOCKED = ("torch", "tensorrt", "pycuda", "cuda")

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked by the test: {name}")
        return None

sys.meta_path.insert(0, Blocker())
import reclnet.runtime as rt

cv2_ok = importlib.util.find_spec("cv2") is not None
report = {"ok": [], "failed": {}, "skipped": {}}
names = ["reclnet.runtime"] + [
    m.name for m in pkgutil.walk_packages(rt.__path__, "reclnet.runtime.")
]
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        if not cv2_ok and "cv2" in str(exc):
            report["skipped"][name] = "needs cv2, which is not installed"
        else:
            report["failed"][name] = repr(exc)
    else:
        report["ok"].append(name)
for public in rt._EXPORTS:
    try:
        getattr(rt, public)
    except ImportError as exc:
        report["failed"][f"reclnet.runtime.{public}"] = repr(exc)
report["leaked"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps(report))
"""


def test_every_runtime_module_imports_without_torch_tensorrt_cuda() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=root, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not report["failed"], report["failed"]
    assert not report["leaked"], report["leaked"]
    # The walk really found the scorer and its backends.
    for name in (
        "reclnet.runtime.scorer",
        "reclnet.runtime.state_pool",
        "reclnet.runtime.snapshot",
        "reclnet.runtime.backends.torch.runner",
        "reclnet.runtime.backends.onnxruntime.runner",
    ):
        assert name in report["ok"]
    if report["skipped"]:
        pytest.skip(f"modules skipped: {report['skipped']}")


def test_torch_backend_without_torch_names_the_problem() -> None:
    script = SCRIPT.split("import reclnet.runtime as rt")[0] + (
        "from reclnet.runtime.backends import BackendError, load_backend\n"
        "try:\n"
        "    load_backend('torch', checkpoint='x.pt')\n"
        "except BackendError as exc:\n"
        "    print('BackendError:', exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "BackendError:" in proc.stdout and "PyTorch is not installed" in proc.stdout
