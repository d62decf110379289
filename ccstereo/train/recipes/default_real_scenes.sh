#!/usr/bin/env bash
# The real-scene recipe, in one file. Resumable: run it again with the same RUN folder and it skips the data it
# already wrote and continues training from the last checkpoint (checkpoint + optimiser + step; the data order is
# seeded by --seed + step).
#   bash ccstereo/train/recipes/default_real_scenes.sh RUN_FOLDER
# Needs: pip install -e ".[export,train,cpu]", apt-get (the real assets are fetched once into
# ~/.cache/ccstereo/real-assets, or $CCSTEREO_ASSETS_DIR), soundscaperenderer-common (FABIAN).
set -euo pipefail
run=${1:?usage: default_real_scenes.sh RUN_FOLDER}
mkdir -p "$run"
scenes() {  # scenes(folder, seed, kind, clips, extra...): once
  [ -f "$1/metadata.json" ] || ccs-synth "$1" --kind "$3" --clips "$4" --seconds 8 --seed "$2" \
    --hrtf kemar,fabian --quiet "${@:5}"
}
# 1. Real-looking scenes (two processes: one per core): photographed objects over real pictures and footage, real
#    recordings, two measured heads (MIT KEMAR from slab, FABIAN from Debian's SSR), paired wall reflections and a
#    coherent tail in 60 %, JPEG artefacts; assets of the "train" side only. 120 coloured-shape scenes beside them.
scenes "$run/data_a" 2000 real-train 150 --no-mp4 & first=$!
scenes "$run/data_b" 2001 real-train 150 --no-mp4 & second=$!
wait "$first" && wait "$second"  # either failing stops the recipe
scenes "$run/shapes" 1000 shapes 120 --no-mp4
[ -f "$run/mix/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix" "$run/data_a" "$run/data_b" "$run/shapes"
# 2. Warm start from the previous default (the coloured-shapes model, bundled until 2026-12-04): its exported graph
#    from git history, its weights recovered exactly (ccstereo.model.from_onnx) and trained on real + shapes with
#    mirroring and objectness, BatchNorm statistics frozen. (Trained from scratch, the real-scene runs learned to
#    ignore the picture: docs/quality.md.)
if [ ! -f "$run/init.onnx" ]; then
  git -C "$(dirname "$0")" show e59b5c1:runtime/assets/default/model.onnx > "$run/init.onnx.part"
  mv "$run/init.onnx.part" "$run/init.onnx"
fi
ccs-train "$run/mix" --train-split "$run/mix/splits/split1/train.txt" --val-split "$run/mix/splits/split1/val.txt" \
  -o "$run/train" --steps 3000 --batch-size 16 --resnet-width 32 --aspp-hidden 128 --init "$run/init.onnx" \
  --frozen-bn --lr-visual 1e-4 --lr-audio 2e-4 --mirror --objectness-weight 0.5 --bf16 --val-every 500 \
  --val-clips 4 --seed 0
# 3. int8 calibration videos (training side, another seed) and the export.
scenes "$run/calibration" 3033 real-train 16
ccs-export "$run/train/last.safetensors" -o "$run/model" --mirror-tta $(printf -- '--calibrate %s ' "$run"/calibration/*.mp4)
