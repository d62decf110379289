"""The listening page: what it shows (``build_view``: tracks, loudness match, ILD, spectrograms, report,
metrics) and the page itself (``render``: one HTML file with its script, style and data inline; media by URL)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ccstereo.runtime.errors import CCStereoRuntimeError
from ccstereo.runtime.view import analysis

METRICS_MAX_S = 600.0  # longer files: metrics are left to ccs-eval (the page stays quick to open)
METRICS_RATE_HZ = 16000  # the paper's metrics are defined at 16 kHz
# What a browser plays from a file served as is; anything else is decoded and served as a WAV we write.
PLAYABLE_AUDIO = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/mp4",  # QuickTime with H.264 / AAC plays as MP4 in browsers
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    **PLAYABLE_AUDIO,
}


class ViewError(CCStereoRuntimeError):
    """Something the page cannot be made from: a missing video, an unreadable report."""


@dataclass
class View:
    """Everything the page needs: ``data`` for the script, the files it plays by name, and the audio this
    module made (name -> (rate, mono or stereo samples)) that the caller writes as WAV before serving."""

    data: dict
    files: dict[str, Path] = field(default_factory=dict)
    derived: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def _has_video(path: Path) -> bool:
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ViewError(f"{path}: unreadable media file ({' '.join(str(exc).split())[:200]})") from exc


def _padded(audio: np.ndarray, rate_hz: int, start_s: float) -> np.ndarray:
    """``audio`` with ``start_s`` of silence in front, so that time 0 of the WAV is time 0 of the video."""
    lead = round(max(0.0, start_s) * rate_hz)
    return np.concatenate([np.zeros(audio.shape[:-1] + (lead,), audio.dtype), audio], axis=-1) if lead else audio


def _track(view: View, key: str, label: str, served: Path | None, decoded: tuple[int, float, np.ndarray]) -> None:
    """Add a playable track: the file ``served`` as it is, or else ``decoded`` (rate, start, audio) as a WAV."""
    rate, start_s, audio = decoded
    if served is not None:
        name = f"{key}{served.suffix.lower()}"
        view.files[name] = served
    else:
        name = f"{key}.wav"
        view.derived[name] = (rate, _padded(audio, rate, start_s))
    view.data["tracks"].append({"id": key, "label": label, "media": name, "level": analysis.rms(audio)})


def _if_playable(path: Path, kinds) -> Path | None:
    return path if path.suffix.lower() in kinds else None


def build_view(output: Path, original: Path | None, reference: Path | None, report: dict | None) -> View:
    """Read the output (and the original, the reference) once and compute what the page shows."""
    from ccstereo.runtime.media import read_audio

    rate, start_s, audio = read_audio(output)
    video = output if _has_video(output) else original if original is not None and _has_video(original) else None
    if video is None:
        raise ViewError(f"{output}: no video stream here; give the input video with --input")
    duration_s = audio.shape[1] / rate + start_s
    video_name = f"video{video.suffix.lower()}"
    view = View({"title": output.name, "duration_s": round(duration_s, 3), "video": video_name, "tracks": []})
    view.files[video_name] = video
    source = original if original is not None else output
    mix_rate, mix_start, mix = (rate, start_s, audio) if source == output else read_audio(source)
    said = "the input's" if source != output else "the output's L+R, the same"
    label = f"A: original ({said} mix the model hears, both ears)"
    _track(view, "original", label, None, (mix_rate, mix_start, analysis.mono_mix(mix)))
    _track(view, "binaural", "B: binaural output", _if_playable(output, CONTENT_TYPES), (rate, start_s, audio))
    view.data["ild"] = {"frame_s": analysis.ILD_FRAME_S, "output": analysis.ild_curve(audio, rate)}
    view.data["spectrograms"] = analysis.spectrograms(audio, rate).to_dict()
    view.data["spectrograms"]["start_s"] = round(start_s, 3)
    if reference is not None:
        ref_rate, ref_start, ref = read_audio(reference)
        _track(view, "reference", "R: reference", _if_playable(reference, PLAYABLE_AUDIO), (ref_rate, ref_start, ref))
        view.data["ild"]["reference"] = analysis.ild_curve(ref, ref_rate)
        view.data["metrics"] = _metrics(audio, rate, ref, ref_rate)
    gains = analysis.matched_gains({t["id"]: t["level"] for t in view.data["tracks"]})
    for track in view.data["tracks"]:
        track["gain"] = round(gains[track["id"]], 6)
    view.data["report"] = report
    return view


def _metrics(pred: np.ndarray, pred_rate: int, ref: np.ndarray, ref_rate: int) -> dict:
    """The paper's metrics of the output against the reference (ccs-eval's protocol), or why they are not here."""
    from math import gcd

    from scipy.signal import resample_poly

    from ccstereo.metrics import evaluate, peak_normalize

    if max(pred.shape[1] / pred_rate, ref.shape[1] / ref_rate) > METRICS_MAX_S:
        return {"skipped": f"longer than {METRICS_MAX_S:.0f} s: run ccs-eval on the wav files"}

    def at_16k(x: np.ndarray, rate: int) -> np.ndarray:
        g = gcd(rate, METRICS_RATE_HZ)
        x64 = x.astype(np.float64)
        return x64 if rate == METRICS_RATE_HZ else resample_poly(x64, METRICS_RATE_HZ // g, rate // g, axis=1)

    p, r = at_16k(pred, pred_rate), at_16k(ref, ref_rate)
    n = min(p.shape[1], r.shape[1])
    scores = evaluate(peak_normalize(p[:, :n]), peak_normalize(r[:, :n]), METRICS_RATE_HZ)
    return {k: round(float(v), 5) for k, v in scores.items()}


def report_entry(report_file: Path, output: Path) -> dict:
    """Return the entry of ``output`` in a ccs-run --report file (``jobs.read_report``: one schema, local or Ray)."""
    from ccstereo.runtime.jobs import read_report
    from ccstereo.runtime.writers import same_file

    try:
        entries = read_report(report_file)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ViewError(f"{report_file}: cannot read the report ({' '.join(str(exc).split())})") from exc
    for entry in entries:
        named = entry.get("output")
        if isinstance(named, str) and same_file(Path(named), output):
            return entry
    raise ViewError(f"{report_file}: has no entry for {output}")


def _asset(name: str) -> str:
    return resources.files("ccstereo.runtime.view").joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(data: dict) -> str:
    """JSON that is safe inside a <script> element (no closing tag, no HTML comment, no JS line separators)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    escapes = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
    for raw, escaped in escapes.items():
        text = text.replace(raw, escaped)
    return text


def render(view: View, urls: dict[str, str]) -> str:
    """The page as one HTML text: style, script and data inline; ``urls`` says where each media name is."""
    from html import escape

    data = dict(view.data, urls=urls)
    page = _asset("page.html")
    for marker, value in (
        ("/*CCS_STYLE*/", _asset("page.css")),
        ("/*CCS_SCRIPT*/", _asset("page.js")),
        ("/*CCS_DATA*/", _script_json(data)),
        ("CCS_TITLE", escape(view.data["title"])),
    ):
        page = page.replace(marker, value)
    return page


def relative_url(path: Path, page_folder: Path) -> str:
    """A URL relative to the page's folder for a local file (for --html pages opened from disk)."""
    from urllib.parse import quote

    return quote(os.path.relpath(os.path.realpath(path), os.path.realpath(page_folder)).replace(os.sep, "/"))
