#!/usr/bin/env bash
# The recipe of the bundled default model (runtime/assets/default/), in one file. Resumable: run it again with
# the same RUN folder and it skips the data it already wrote and continues training from the last checkpoint
# (checkpoint + optimiser + step; the data order is seeded by --seed + step).
#   bash ccstereo/train/recipes/default_real_scenes.sh RUN_FOLDER
# Needs: pip install -e ".[export,train,cpu]", apt-get (the real assets are fetched once into
# ~/.cache/ccstereo/real-assets, or $CCSTEREO_ASSETS_DIR), soundscaperenderer-common (FABIAN).
set -euo pipefail
run=${1:?usage: default_real_scenes.sh RUN_FOLDER}
steps=${STEPS:-3000}
mkdir -p "$run"
# 1. Training scenes: photographed objects over real pictures and footage, real recordings, two measured heads
#    (MIT KEMAR from slab, FABIAN from Debian's SSR), rooms in 60 %, JPEG artefacts; assets on the "train" side.
[ -f "$run/data/metadata.json" ] || ccs-synth "$run/data" --kind real-train --clips 300 --seconds 8 --seed 2000 \
  --hrtf kemar,fabian --no-mp4 --quiet
# 2. Training: the light default architecture, from scratch, mirror augmentation, objectness auxiliary loss.
ccs-train "$run/data" --train-split "$run/data/splits/split1/train.txt" --val-split "$run/data/splits/split1/val.txt" \
  -o "$run/train" --steps "$steps" --batch-size 16 --resnet-width 32 --aspp-hidden 128 --lr-visual 3e-4 \
  --lr-audio 5e-4 --mirror --objectness-weight 0.5 --bf16 --val-every 1000 --val-clips 4 --seed 0
# 3. int8 calibration videos (training side, other seed) and the export.
[ -f "$run/calibration/metadata.json" ] || ccs-synth "$run/calibration" --kind real-train --clips 16 --seconds 8 \
  --seed 3033 --hrtf kemar,fabian --quiet
ccs-export "$run/train/last.safetensors" -o "$run/model" $(printf -- '--calibrate %s ' "$run"/calibration/*.mp4)
