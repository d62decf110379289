#!/usr/bin/env bash
# Step 4 candidate (busy pictures) of the bundled default, in one file: today's default (default_centred.sh's run,
# bundled at 1cf403b) trained further on its own scenes plus 240 scenes over a mosaic — 2 x 2 to 3 x 3 patches of
# several photographs, hard edges and unrelated content everywhere, none of which sounds (`ccs-synth
# --mosaic-share 1 --footage-share 0`). Over footage unlike any training clip (`real_scenes.py --unseen-footage`:
# lit towers at night) today's default follows the picture's edges, not the pasted object. Same losses, rates and
# graph (same speed) as default_centred.sh.
# Resumable: run it again with the same RUN folder and it skips the data it already wrote and continues training
# from the last checkpoint.
#   bash ccstereo/train/recipes/default_mosaic.sh RUN_FOLDER
# Needs: pip install -e ".[export,train,cpu]", apt-get (real assets, as default_real_scenes.sh).
set -euo pipefail
run=${1:?usage: default_mosaic.sh RUN_FOLDER}
mkdir -p "$run"
scenes() {  # scenes(folder, seed, kind, clips, extra...): once
  [ -f "$1/metadata.json" ] || ccs-synth "$1" --kind "$3" --clips "$4" --seconds 8 --seed "$2" \
    --hrtf kemar,fabian --quiet "${@:5}"
}
# 1. default_centred.sh's scenes (seeds 2000-2004 and its shapes, the same scenes) and 240 over mosaics (2008-2009).
scenes "$run/data_a" 2000 real-train 150 --no-mp4 & first=$!
scenes "$run/data_b" 2001 real-train 150 --no-mp4 & second=$!
wait "$first" && wait "$second"
scenes "$run/data_c" 2002 real-train 150 --no-mp4 & first=$!
scenes "$run/data_d" 2003 real-train 150 --no-mp4 & second=$!
wait "$first" && wait "$second"
scenes "$run/shapes" 1000 shapes 120 --no-mp4
scenes "$run/empty" 2004 real-train 150 --no-mp4 --centred-share 1 --max-silent 0
scenes "$run/mosaic_a" 2008 real-train 120 --no-mp4 --mosaic-share 1 --footage-share 0 & first=$!
scenes "$run/mosaic_b" 2009 real-train 120 --no-mp4 --mosaic-share 1 --footage-share 0 & second=$!
wait "$first" && wait "$second"
[ -f "$run/mix/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix" "$run/data_a" "$run/data_b" \
  "$run/data_c" "$run/data_d" "$run/shapes" "$run/empty" "$run/mosaic_a" "$run/mosaic_b"
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
