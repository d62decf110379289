"""A lossy output's true peak, measured while it is written, is the one its finished file decodes to.

Writers really encode (FFmpeg's AAC into mp4 and Matroska); the reference is an FFT resampling of what the
finished file decodes to, independent of the code under test.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from ccstereo.runtime.clipping import LOSSY_TRUE_PEAK_DBTP, ClipGuard
from ccstereo.runtime.true_peak import decoded_true_peak
from ccstereo.runtime.writers import MuxWriter, WriteMode
from ccstereo.testing.media import write_mp4

RATE = 48000


def _fft_true_peak(pcm: np.ndarray, factor: int = 4) -> float:
    n = pcm.shape[1]
    padded = np.zeros((pcm.shape[0], n * factor // 2 + 1), complex)
    spectrum = np.fft.rfft(pcm, axis=1)
    padded[:, : spectrum.shape[1]] = spectrum
    return float(np.abs(np.fft.irfft(padded, n * factor, axis=1) * factor).max())


def _decoded(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1).astype(np.float64)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(int(2.5 * RATE)) / RATE
    quiet = 0.05 * rng.standard_normal((2, t.size))
    burst = quiet.copy()
    burst[:, RATE : RATE + 4800] += 0.9 * np.sign(np.sin(2 * np.pi * 997 * t[:4800]))  # a square burst mid-file
    late = quiet.copy()
    late[0, -300:] = 0.95  # a step in the last 300 samples (the encoder's final, padded frame)
    square = 0.97 * np.sign(np.sin(2 * np.pi * 220 * t))[None].repeat(2, 0)
    return {"burst": burst, "late": late, "square": square}


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("tp") / "picture.mp4", seconds=3.0, fps=10)


@pytest.mark.parametrize("fmt", ["mp4", "mkv"])
@pytest.mark.parametrize(("start_s", "background"), [(0.0, False), (0.4, False), (0.4, True)])
def test_the_measure_while_writing_equals_the_finished_files(tmp_path, picture, fmt, start_s, background):
    for name, signal in _signals().items():
        writer = MuxWriter(tmp_path / f"{name}.{fmt}", picture, RATE, fmt, WriteMode(start_s))
        writer.measure_true_peak(background)
        for i in range(0, signal.shape[1], 2999):  # blocks that are not whole AAC frames
            writer.write(signal[:, i : i + 2999].astype(np.float32))
        done = writer.finish()
        measured = writer.true_peak()
        assert measured == decoded_true_peak(done), name  # to the bit
        reference = _fft_true_peak(_decoded(done))
        assert 20 * np.log10(measured / reference) == pytest.approx(0.0, abs=0.3), name
        writer.abort()


def test_an_unmeasured_writer_says_so(tmp_path, picture):
    writer = MuxWriter(tmp_path / "o.mp4", picture, RATE, "mp4")
    writer.write(np.zeros((2, 4800), np.float32))
    writer.finish()
    assert writer.true_peak() is None
    writer.abort()


def test_a_loud_output_is_rewritten_to_the_limit_and_reports_what_its_file_decodes_to(tmp_path, picture):
    final = tmp_path / "out.mp4"
    guard = ClipGuard(lambda: MuxWriter(final, picture, RATE, "mp4"), "rescale", final, lossy=True)
    guard.write(_signals()["square"].astype(np.float32))
    assert guard.commit() == final
    report = guard.report
    assert report.action == "rescaled" and report.gain_db < 0
    decoded = decoded_true_peak(final)
    assert report.true_peak_dbtp == pytest.approx(20 * np.log10(decoded), abs=1e-9)
    assert 20 * np.log10(_fft_true_peak(_decoded(final))) <= LOSSY_TRUE_PEAK_DBTP + 0.1
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no spool, no temporary file left


class _Counted:
    """A real writer that counts the blocks it was given and whether it was aborted."""

    def __init__(self, writer, log: list) -> None:
        self.writer, self.blocks, self.aborted = writer, 0, False
        log.append(self)

    def write(self, block):
        self.blocks += 1
        self.writer.write(block)

    def abort(self):
        self.aborted = True
        self.writer.abort()

    def __getattr__(self, name):
        return getattr(self.writer, name)


class _KeepsWriting(ClipGuard):
    """The guard as it was: the first writer goes on to the end even after a sample above full scale."""

    def _drop_writer(self) -> None:
        pass


@pytest.mark.parametrize("fmt", ["mp4", "wav"])
def test_above_full_scale_the_first_writer_stops_and_the_output_is_unchanged(tmp_path, picture, fmt):
    from ccstereo.runtime.writers import open_writer

    rng = np.random.default_rng(3)
    blocks = [0.15 * rng.standard_normal((2, 4000)).astype(np.float32) for _ in range(12)]
    blocks[4][1, 123] = 1.6  # the first sample above full scale, in the fifth block
    outputs = {}
    for guard_class in (ClipGuard, _KeepsWriting):
        final = tmp_path / guard_class.__name__ / f"out.{fmt}"
        final.parent.mkdir()
        log: list = []
        opened = lambda: _Counted(open_writer(final, picture, RATE, fmt), log)  # noqa: E731, B023
        guard = guard_class(opened, "rescale", final, lossy=fmt == "mp4")
        for block in blocks:
            guard.write(block)
        assert guard.commit() == final
        assert guard.report.action == "rescaled" and guard.report.samples_over == 1
        first, again = log[0], log[1]
        assert first.aborted and not again.aborted
        assert first.blocks == (4 if guard_class is ClipGuard else 12)  # stopped at the block above full scale
        outputs[guard_class] = final.read_bytes()
        assert sorted(p.name for p in final.parent.iterdir()) == [final.name]  # nothing half-written left
    assert outputs[ClipGuard] == outputs[_KeepsWriting]  # the same file, to the byte
