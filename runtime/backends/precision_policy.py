"""When a reduced precision may run: the accuracy gates the exporter measures against and the runtime obeys.

Figures are the exported model's own, measured against its fp32 graph on the export's verification set (and
held-out videos) and stored in its metadata (``ModelInfo.measured_snr_db`` / ``measured_worst_metric_change``).
"""

from __future__ import annotations

# ``--precision auto`` picks a reduced precision only at or above this binaural SNR vs fp32 ...
AUTO_MIN_SNR_DB = 35.0
# ... and with every paper metric within this relative change of fp32.
AUTO_MAX_METRIC_CHANGE = 0.02
# Below this no precision is offered at all: the exporter drops the file, the runtime refuses to run it.
MIN_OFFERED_SNR_DB = 30.0


def auto_may_pick(snr_db: float | None, worst_metric_change: float | None) -> bool:
    """Return whether ``auto`` may choose a precision measured at ``snr_db`` / ``worst_metric_change``."""
    if snr_db is None:
        return False
    return snr_db >= AUTO_MIN_SNR_DB and (worst_metric_change is None or worst_metric_change <= AUTO_MAX_METRIC_CHANGE)


def offered(snr_db: float | None) -> bool:
    """Return whether a precision measured at ``snr_db`` may be run at all (asked for by name)."""
    return snr_db is not None and snr_db >= MIN_OFFERED_SNR_DB


def describe(snr_db: float | None, worst_metric_change: float | None, precision: str) -> str:
    """Return the measured figures in words, for the reason a backend was chosen."""
    if snr_db is None:
        return f"{precision} accuracy not measured at export"
    metrics = "" if worst_metric_change is None else f", paper metrics within {worst_metric_change:.1%}"
    return f"measured {snr_db:.1f} dB vs fp32{metrics}"
