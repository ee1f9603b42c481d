"""Facts about the machine a benchmark ran on: CPU, caches, memory, load, library versions.

Only the standard library (plus threadpoolctl when installed): reading these facts
must never import the heavy libraries whose speed is being measured.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions decide the figures; absent ones are reported as None.
LIBRARIES = (
    "reclnet",
    "numpy",
    "torch",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "tensorrt",
    "scipy",
    "pandas",
    "bottleneck",
    "matplotlib",
    "Cython",
    "threadpoolctl",
)

#: Instruction-set flags that decide which kernels the runtimes pick.
CPU_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    # Arm: NEON, dot product (INT8), bf16 matmul, SVE
    "asimd",
    "asimddp",
    "bf16",
    "sve",
)

#: Summary of the flags that decide fp32 / bf16 / INT8 kernels: feature -> any of these flags.
ISA_FEATURES = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    "vnni": ("avx512_vnni", "avx_vnni", "asimddp"),
    "bf16": ("avx512_bf16", "amx_bf16", "bf16"),
    "amx": ("amx_tile", "amx_int8", "amx_bf16"),
}

#: Environment variables that change thread pools or kernel selection.
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "ORT_NUM_THREADS",
)


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as ``key -> value``."""
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def cpu_flags(path: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The :data:`CPU_FLAGS` this CPU has (x86 ``flags`` or Arm ``Features`` line)."""
    info = _cpuinfo(path)
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return [f for f in CPU_FLAGS if f in flags]


def isa_features(flags: list[str]) -> dict[str, bool]:
    """``{"avx2": ..., "avx512": ..., "vnni": ..., "bf16": ..., "amx": ...}`` from flags."""
    have = set(flags)
    return {name: any(f in have for f in any_of) for name, any_of in ISA_FEATURES.items()}


def _parse_size(text: str) -> int | None:
    """``"32K"``, ``"1 MiB"``, ``"32768"`` -> bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)(i?B)?\s*", text, flags=re.IGNORECASE)
    if not match:
        return None
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def cache_sizes(root: Path = Path("/sys/devices/system/cpu")) -> list[dict[str, Any]]:
    """The CPU caches as sysfs describes them (per instance, with who shares each).

    Parameters
    ----------
    root : Path
        The sysfs CPU directory (a parameter so tests can point it at a fake tree).

    Returns
    -------
    list of dict
        ``{"level": int, "type": "Data" | "Instruction" | "Unified", "size_bytes": int,
        "instances": int, "shared_cpu_list": str}`` per distinct cache, ordered by level.
    """
    seen: dict[tuple[int, str, str], dict[str, Any]] = {}
    for index in sorted(root.glob("cpu[0-9]*/cache/index[0-9]*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = _parse_size((index / "size").read_text())
            shared = (index / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        key = (level, kind, shared)
        if key not in seen:
            seen[key] = {
                "level": level,
                "type": kind,
                "size_bytes": size,
                "shared_cpu_list": shared,
            }
    caches: dict[tuple[int, str], dict[str, Any]] = {}
    for (level, kind, _), info in sorted(seen.items()):
        entry = caches.setdefault(
            (level, kind),
            {
                "level": level,
                "type": kind,
                "size_bytes": info["size_bytes"],
                "instances": 0,
                "shared_cpu_list": info["shared_cpu_list"],
            },
        )
        entry["instances"] += 1
    return [caches[key] for key in sorted(caches)]


def _lscpu_caches() -> list[dict[str, Any]]:
    """Fallback when sysfs has no cache tree: ``lscpu -C`` (total sizes per level)."""
    try:
        text = subprocess.run(
            ["lscpu", "-C=NAME,ALL-SIZE,ONE-SIZE"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            out.append({"name": parts[0], "size_bytes": _parse_size(parts[2]), "total": parts[1]})
    return out


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions from package metadata (nothing is imported)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def thread_pools() -> list[dict[str, Any]]:
    """BLAS / OpenMP pools loaded in this process, when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "num_threads", "version", "architecture")
    return [{k: pool.get(k) for k in keep} for pool in threadpool_info()]


def _git_commit(repo: Path) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (a load above the core count means contention)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def collect() -> dict[str, Any]:
    """Everything that decides how fast this machine runs the benchmarks.

    Returns
    -------
    dict
        JSON-ready: ``cpu_model``, ``logical_cpus``, ``usable_cpus`` (affinity),
        ``physical_cores``, ``cpu_flags``, ``isa`` (see :func:`isa_features`), ``caches`` (see :func:`cache_sizes`),
        ``memory_bytes``, ``platform``, ``python``, ``libraries``, ``thread_pools``,
        ``thread_env``, ``load_average``, ``git_commit``, ``collected_at`` (UTC ISO time).
    """
    info = _cpuinfo()
    flags = cpu_flags()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    physical = None
    if "cpu cores" in info:
        siblings = int(info.get("siblings", info["cpu cores"]))
        sockets = max(1, (os.cpu_count() or 1) // max(1, siblings))
        physical = int(info["cpu cores"]) * sockets
    caches = cache_sizes()
    return {
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "physical_cores": physical,
        "cpu_flags": flags,
        "isa": isa_features(flags),
        "caches": caches or _lscpu_caches(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "thread_pools": thread_pools(),
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "load_average": load_average(),
        "git_commit": _git_commit(Path(__file__).resolve().parents[1]),
        "collected_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def last_level_cache_bytes(machine: dict[str, Any] | None = None) -> int | None:
    """Size of the largest data / unified cache (one instance), or None when unknown."""
    caches = (machine or {}).get("caches") if machine else cache_sizes()
    sizes = [
        c.get("size_bytes")
        for c in caches or []
        if c.get("type", "Unified") != "Instruction" and c.get("size_bytes")
    ]
    return max(sizes) if sizes else None


def describe(machine: dict[str, Any]) -> str:
    """One line for report headers: CPU, cores, caches, memory, ISA features."""
    caches = ", ".join(
        f"L{c['level']}{'d' if c.get('type') == 'Data' else ''} "
        f"{_human(c['size_bytes'])}" + (f" x{c['instances']}" if c.get("instances", 1) > 1 else "")
        for c in machine.get("caches", [])
        if "level" in c and c.get("type") != "Instruction" and c.get("size_bytes")
    )
    mem = machine.get("memory_bytes")
    isa = machine.get("isa") or isa_features(machine.get("cpu_flags") or [])
    have = [name for name, present in isa.items() if present]
    return (
        f"{machine.get('cpu_model')}, {machine.get('usable_cpus')} usable CPUs"
        + (f" ({machine['physical_cores']} cores)" if machine.get("physical_cores") else "")
        + (f", {caches}" if caches else "")
        + (f", {_human(mem)} RAM" if mem else "")
        + (f"; ISA: {' '.join(have) or 'none of ' + '/'.join(isa)}" if isa else "")
    )


def _human(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"
