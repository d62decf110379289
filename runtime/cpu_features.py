"""What this CPU offers the reduced precisions (native BF16, an int8 dot-product unit), and which CPUs this
process may use.

The policy (``backends.select`` and ``backends.tuning``) asks these two questions only. Both read the CPU's flags
from /proc/cpuinfo, unless the one documented override is set:

``CCSTEREO_CPU_FLAGS="avx512_bf16 avx512_vnni"`` (space- or comma-separated /proc/cpuinfo flag names; ``none`` or
empty for no flag at all) replaces the flags the policy sees. It changes which precisions ``auto`` considers, not
what the hardware runs: OpenVINO computes bf16 and int8 on any x86 CPU (emulated where the unit is missing), so
both sides of every CPU-dependent rule can be exercised, and their accuracy checked, on whatever CPU runs the tests.
oneDNN's ``ONEDNN_MAX_CPU_ISA`` does not reach OpenVINO's capability report (checked with OpenVINO 2026.4), so it
cannot serve as this switch.
"""

from __future__ import annotations

import os

OVERRIDE_ENV = "CCSTEREO_CPU_FLAGS"
INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # strongest first
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def overridden_flags() -> frozenset[str] | None:
    """Return the flags named by $CCSTEREO_CPU_FLAGS, or None when it is not set."""
    raw = os.environ.get(OVERRIDE_ENV)
    if raw is None:
        return None
    names = raw.replace(",", " ").split()
    return frozenset() if names == ["none"] else frozenset(names)


def proc_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """Return the flags of /proc/cpuinfo (or of the text ``cpuinfo``); empty where there is none."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return frozenset()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return frozenset(flags)


def policy_flags() -> frozenset[str]:
    """Return the flags the engine policy decides by: the override when set, else this CPU's."""
    forced = overridden_flags()
    return proc_flags() if forced is None else forced


def int8_dot_product(cpuinfo: str | None = None) -> str | None:
    """Return the CPU's int8 dot-product extension (amx_int8, avx512_vnni, avx_vnni) or None.

    Without one, int8 convolutions are no faster than bf16/fp32 ones, so ``auto`` does not pick int8.
    ``cpuinfo``: a /proc/cpuinfo text to read instead of this machine's (the override does not apply then)."""
    flags = proc_flags(cpuinfo) if cpuinfo is not None else policy_flags()
    return next((flag for flag in INT8_DOT_FLAGS if flag in flags), None)


def native_bf16() -> bool:
    """Return whether the CPU computes BF16 natively: the override's flags when set, else OpenVINO's report
    (False without OpenVINO)."""
    forced = overridden_flags()
    if forced is not None:
        return any(flag in forced for flag in BF16_FLAGS)
    from ccstereo.runtime.openvino_import import core

    try:
        found = core()
    except ImportError:
        return False
    return "BF16" in found.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def usable_cpus() -> frozenset[int]:
    """Return the CPUs this process may run on: its affinity mask, which taskset, a container's cpuset, or a batch
    system's allocation narrows (``os.cpu_count()`` counts the whole machine: on a 64-CPU node with 4 allotted,
    64 engine threads would share 4 CPUs); every CPU where the platform cannot say."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset(range(os.cpu_count() or 1))
