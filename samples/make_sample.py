"""Make samples/sample.mp4: one ccs-synth scene (seed 77, MIT KEMAR HRTF) re-muxed with a MONO audio track.

    python samples/make_sample.py

The picture is the synthetic scene (a sounding object moving over a textured background); the audio is the mono
mix (L + R) / 2 of its binaural rendering, i.e. what an ordinary mono-audio video would carry. The binaural
rendering is kept beside it as sample.reference.wav, so ccs-eval can score ccs-run's output against it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    import soundfile as sf
    from PIL import Image

    from ccstereo.synth.dataset import write_clip_mp4, write_dataset

    here = Path(__file__).resolve().parent
    work = Path(tempfile.mkdtemp())
    data = write_dataset(work / "s", 1, 8.0, seed=77, hrtf="kemar", mp4=False, log=lambda _m: None)
    binaural, rate = sf.read(str(data / "binaural_audios" / "000001.wav"), dtype="float32", always_2d=True)
    sf.write(here / "sample.reference.wav", binaural, rate, subtype="PCM_16")
    mono = binaural.mean(axis=1).astype(np.float32)[None, :]
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((data / "frames" / "000001.mp4").glob("*.png"))]
    write_clip_mp4(here / "sample.mp4", frames, mono, rate, 8.0, crf=23)


if __name__ == "__main__":
    main()
