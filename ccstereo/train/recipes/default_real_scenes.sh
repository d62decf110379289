#!/usr/bin/env bash
# The real-scene recipe, in one file. Resumable: run it again with the same RUN folder and it skips the data it
# already wrote and continues training from the last checkpoint (checkpoint + optimiser + step; the data order is
# seeded by --seed + step).
#   bash ccstereo/train/recipes/default_real_scenes.sh RUN_FOLDER
# Needs: pip install -e ".[export,train,cpu]", apt-get (the real assets are fetched once into
# ~/.cache/ccstereo/real-assets, or $CCSTEREO_ASSETS_DIR), soundscaperenderer-common (FABIAN).
# (The run of 2026-12-04 differed in stages 1-2, see runtime/assets/default/README.md or the closing note.)
set -euo pipefail
run=${1:?usage: default_real_scenes.sh RUN_FOLDER}
mkdir -p "$run"
train() {  # train(data folder, total steps, validation period): one ccs-train call, resumed in the same folder
  ccs-train "$1" --train-split "$1/splits/split1/train.txt" --val-split "$1/splits/split1/val.txt" \
    -o "$run/train" --steps "$2" --batch-size 16 --resnet-width 32 --aspp-hidden 128 --lr-visual 3e-4 \
    --lr-audio 5e-4 --mirror --objectness-weight 0.5 --bf16 --val-every "$3" --val-clips 4 --seed 0
}
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
[ -f "$run/real/metadata.json" ] || python -m ccstereo.synth.combine "$run/real" "$run/data_a" "$run/data_b"
[ -f "$run/mix/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix" "$run/data_a" "$run/data_b" "$run/shapes"
# 2. Stage 1: 3000 steps on the real scenes alone, from scratch (light default architecture).
train "$run/real" 3000 1000
# 3. Stage 2: resumed to 6000 steps on real + shapes scenes (the polynomial learning-rate decay restarts at 54 %).
train "$run/mix" 6000 500
# 4. int8 calibration videos (training side, another seed) and the export.
scenes "$run/calibration" 3033 real-train 16
ccs-export "$run/train/last.safetensors" -o "$run/model" $(printf -- '--calibrate %s ' "$run"/calibration/*.mp4)
