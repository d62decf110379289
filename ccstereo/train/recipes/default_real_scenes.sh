#!/usr/bin/env bash
# The recipe of the bundled default model (runtime/assets/default/), in one file. Resumable: run it again with
# the same RUN folder and it skips the data it already wrote and continues training from the last checkpoint
# (checkpoint + optimiser + step; the data order is seeded by --seed + step).
#   bash ccstereo/train/recipes/default_real_scenes.sh RUN_FOLDER
# Needs: pip install -e ".[export,train,cpu]", apt-get (the real assets are fetched once into
# ~/.cache/ccstereo/real-assets, or $CCSTEREO_ASSETS_DIR), soundscaperenderer-common (FABIAN).
set -euo pipefail
run=${1:?usage: default_real_scenes.sh RUN_FOLDER}
mkdir -p "$run"
train() {  # train(data folder, total steps): one ccs-train call, resumed in the same run folder
  ccs-train "$1" --train-split "$1/splits/split1/train.txt" --val-split "$1/splits/split1/val.txt" \
    -o "$run/train" --steps "$2" --batch-size 16 --resnet-width 32 --aspp-hidden 128 --lr-visual 3e-4 \
    --lr-audio 5e-4 --mirror --objectness-weight 0.5 --bf16 --val-every 1000 --val-clips 4 --seed 0
}
# 1. Training scenes: photographed objects over real pictures and footage, real recordings, two measured heads
#    (MIT KEMAR from slab, FABIAN from Debian's SSR), rooms in 60 %, JPEG artefacts; assets on the "train" side.
[ -f "$run/data/metadata.json" ] || ccs-synth "$run/data" --kind real-train --clips 300 --seconds 8 --seed 2000 \
  --hrtf kemar,fabian --no-mp4 --quiet
# 2. Stage 1: 3000 steps on the real scenes alone, from scratch (light default architecture, mirror augmentation,
#    objectness auxiliary loss). Measured after it: the trunk finds the sounding objects (objectness loss 0.07)
#    but the sound ignores the picture (benchmarks/real_scenes.py: ILD correlation 0.00, mirror correlation -1.00).
train "$run/data" 3000
# 3. Stage 2: resumed to 6000 steps (the learning rate's polynomial decay restarts at 54 %) on the real scenes
#    plus 120 coloured-shape scenes (ccs-synth --kind shapes, with their boxes), whose plain picture-to-side link
#    the sound network learns first and then carries over to the real scenes.
[ -f "$run/shapes/metadata.json" ] || ccs-synth "$run/shapes" --clips 120 --seconds 8 --seed 1000 \
  --hrtf kemar,fabian --no-mp4 --quiet
[ -f "$run/mix/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix" "$run/data" "$run/shapes"
train "$run/mix" 6000
# 4. int8 calibration videos (training side, another seed) and the export.
[ -f "$run/calibration/metadata.json" ] || ccs-synth "$run/calibration" --kind real-train --clips 16 --seconds 8 \
  --seed 3033 --hrtf kemar,fabian --quiet
ccs-export "$run/train/last.safetensors" -o "$run/model" $(printf -- '--calibrate %s ' "$run"/calibration/*.mp4)
