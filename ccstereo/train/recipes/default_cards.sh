#!/usr/bin/env bash
# Step 4 candidate (objects shown as whole photographs) of the bundled default, in one file: today's default
# (default_centred.sh's run, bundled at 1cf403b) trained further on its own scenes plus 300 scenes in which 70 % of
# the objects are photo cards — the object on its own photographed background, an opaque rectangle, as an object
# photographed in a scene and pasted whole looks (`ccs-synth --card-share`). Until now every object of training was a
# cut-out, so a rectangle of photograph over footage was a kind of picture no training scene showed. Same losses,
# rates and graph (same speed) as default_centred.sh.
# Resumable: run it again with the same RUN folder and it skips the data it already wrote and continues training
# from the last checkpoint.
#   bash ccstereo/train/recipes/default_cards.sh RUN_FOLDER
# Needs: pip install -e ".[export,train,cpu]", apt-get (real assets, as default_real_scenes.sh).
set -euo pipefail
run=${1:?usage: default_cards.sh RUN_FOLDER}
mkdir -p "$run"
scenes() {  # scenes(folder, seed, kind, clips, extra...): once
  [ -f "$1/metadata.json" ] || ccs-synth "$1" --kind "$3" --clips "$4" --seconds 8 --seed "$2" \
    --hrtf kemar,fabian --quiet "${@:5}"
}
# 1. default_centred.sh's scenes (seeds 2000-2004 and its shapes, the same scenes) and 300 with photo cards (2006).
scenes "$run/data_a" 2000 real-train 150 --no-mp4 & first=$!
scenes "$run/data_b" 2001 real-train 150 --no-mp4 & second=$!
wait "$first" && wait "$second"
scenes "$run/data_c" 2002 real-train 150 --no-mp4 & first=$!
scenes "$run/data_d" 2003 real-train 150 --no-mp4 & second=$!
wait "$first" && wait "$second"
scenes "$run/shapes" 1000 shapes 120 --no-mp4
scenes "$run/empty" 2004 real-train 150 --no-mp4 --centred-share 1 --max-silent 0
scenes "$run/cards_a" 2006 real-train 150 --no-mp4 --card-share 0.7 & first=$!
scenes "$run/cards_b" 2007 real-train 150 --no-mp4 --card-share 0.7 & second=$!
wait "$first" && wait "$second"
[ -f "$run/mix/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix" "$run/data_a" "$run/data_b" \
  "$run/data_c" "$run/data_d" "$run/shapes" "$run/empty" "$run/cards_a" "$run/cards_b"
# 2. Warm start from today's default graph (weights recovered exactly by ccstereo.model.from_onnx; BatchNorms
#    frozen), default_centred.sh's losses and rates.
if [ ! -f "$run/init.onnx" ]; then
  git -C "$(dirname "$0")" show 1cf403b:runtime/assets/default/model.onnx > "$run/init.onnx.part"
  mv "$run/init.onnx.part" "$run/init.onnx"
fi
ccs-train "$run/mix" --train-split "$run/mix/splits/split1/train.txt" --val-split "$run/mix/splits/split1/val.txt" \
  -o "$run/train" --steps 2500 --batch-size 16 --resnet-width 32 --aspp-hidden 128 --init "$run/init.onnx" \
  --frozen-bn --lr-visual 1e-4 --lr-audio 2e-4 --mirror --objectness-weight 0.5 --ild-weight 0.1 --bf16 \
  --val-every 500 --val-clips 4 --seed 0
# 3. int8 calibration videos (training side, another seed) and the export.
scenes "$run/calibration" 3033 real-train 16
ccs-export "$run/train/last.safetensors" -o "$run/model" --mirror-tta $(printf -- '--calibrate %s ' "$run"/calibration/*.mp4)
