"""Combine ccs-synth datasets into one training folder (links, no copies): ``python -m ccstereo.synth.combine
OUT SRC...``. Clip ids become ``<k><id>`` (k = the source's position), metadata and the split lists are merged."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def combine(out: Path, sources: list[Path]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "binaural_audios").mkdir(exist_ok=True)
    (out / "frames").mkdir(exist_ok=True)
    meta: dict = {"combined": [str(s) for s in sources], "clips": {}}
    splits: dict[tuple[str, str], list[str]] = {}
    for k, src in enumerate(sources, start=1):
        info = json.loads((src / "metadata.json").read_text())
        for cid, clip in info["clips"].items():
            new = f"{k}{cid}"
            for link, target in (
                (out / "binaural_audios" / f"{new}.wav", src / "binaural_audios" / f"{cid}.wav"),
                (out / "frames" / f"{new}.mp4", src / "frames" / f"{cid}.mp4"),
            ):
                if not link.is_symlink():
                    link.symlink_to(target.resolve())
            meta["clips"][new] = clip
        for lst in sorted((src / "splits").glob("split*/*.txt")):
            key = (lst.parent.name, lst.name)
            splits.setdefault(key, []).extend(f"{k}{line.strip()}" for line in lst.read_text().splitlines() if line)
    for (split, name), members in splits.items():
        (out / "splits" / split).mkdir(parents=True, exist_ok=True)
        (out / "splits" / split / name).write_text("".join(f"{m}\n" for m in sorted(members)))
    (out / "metadata.json").write_text(json.dumps(meta, indent=1))
    return out


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m ccstereo.synth.combine OUT SRC [SRC ...]")
    combine(Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]])
