#!/usr/bin/env bash
# Variants of step 7's second run (run B of default_soup.sh: the same scenes, start, seed and options), each
# measured on the validation scenes (docs/quality.md, "Real scenes", 2026-12-07):
# - gate: --objectness-gate (the model weighs each visual cell by its own objectness score); not taken;
# - tail: --trunk-tail 3 --lr-trunk 1e-4 (the frozen ImageNet trunk's last stage, blocks 8-10, learns); not taken;
# - side: --ild-side-weight 0.5 (a hinge on the side of each window's ILD, beside the level loss); not taken;
# - centred: run B's options on its scenes plus 150 more whose sound is straight ahead while the picture shows 0-3
#   objects that make no sound (seed 2300, half photo cards): RUN/mix_centred; not taken (SEED=1 too);
# - shapes: run B's options on its scenes plus 480 more coloured-shape scenes (seed 1001; run B has 120 of 2370):
#   RUN/mix_shapes.
# Each exports its weights at steps 1000, 1500 and 2000 to RUN/VARIANT_STEP. SEED=1 trains the same with --seed 1
# (into RUN/train_VARIANT_s1, exports RUN/VARIANT_s1_STEP); the two tail runs' step 1500 averaged, as measured:
#   python -m ccstereo.train.average RUN/tail_soup.safetensors RUN/train_tail/steps/step_001500.safetensors \
#     RUN/train_tail_s1/steps/step_001500.safetensors
# Resumable: run it again with the same RUN folder and it skips the data it already wrote and continues training.
#   bash ccstereo/train/recipes/default_variants.sh RUN_FOLDER gate|tail|side|centred|shapes
# Needs: pip install -e ".[export,train,cpu]", apt-get (real assets, as default_real_scenes.sh).
set -euo pipefail
run=${1:?usage: default_variants.sh RUN_FOLDER gate|tail|side|centred|shapes}
variant=${2:?usage: default_variants.sh RUN_FOLDER gate|tail|side|centred|shapes}
case "$variant" in
  gate) extra=(--objectness-gate) ;;
  tail) extra=(--trunk-tail 3 --lr-trunk 1e-4) ;;
  side) extra=(--ild-side-weight 0.5) ;;
  centred | shapes) extra=() ;;
  *) echo "default_variants.sh: unknown variant $variant (gate, tail, side, centred or shapes)" >&2; exit 2 ;;
esac
seed=${SEED:-0}
name=$variant
[ "$seed" = 0 ] || name=${variant}_s$seed
mkdir -p "$run"
# 1. Run B's scenes: default_lite0.sh's, and 900 lone-object scenes (seeds 2200-2205).
DATA_ONLY=1 bash "$(dirname "$0")/default_lite0.sh" "$run"
. "$(dirname "$0")/lone_scenes.bash"
run_b_scenes "$run"
if [ ! -f "$run/init.onnx" ]; then
  git -C "$(dirname "$0")" show 1cf403b:runtime/assets/default/model.onnx > "$run/init.onnx.part"
  mv "$run/init.onnx.part" "$run/init.onnx"
fi
mix="$run/mix_more"
if [ "$variant" = centred ]; then
  [ -f "$run/centred_silent/metadata.json" ] || ccs-synth "$run/centred_silent" --kind real-train --clips 150 \
    --seconds 8 --seed 2300 --hrtf kemar,fabian --quiet --no-mp4 --centred-share 1 --card-share 0.5
  [ -f "$run/mix_centred/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix_centred" \
    "${RUN_B_SETS[@]/#/$run/}" "$run/centred_silent"
  mix="$run/mix_centred"
fi
if [ "$variant" = shapes ]; then
  [ -f "$run/shapes_more/metadata.json" ] || ccs-synth "$run/shapes_more" --kind shapes --clips 480 --seconds 8 \
    --seed 1001 --hrtf kemar,fabian --quiet --no-mp4
  [ -f "$run/mix_shapes/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix_shapes" \
    "${RUN_B_SETS[@]/#/$run/}" "$run/shapes_more"
  mix="$run/mix_shapes"
fi
# 2. Run B's training line with the variant's options (and scenes).
ccs-train "$mix" --train-split "$mix/splits/split1/train.txt" --val-split "$mix/splits/split1/val.txt" \
  -o "$run/train_$name" --steps 2000 --batch-size 16 --visual-trunk efficientnet_lite0 --lite0-blocks 11 \
  --picture-scale 0.5 --resnet-width 32 --aspp-hidden 128 --init "$run/init.onnx" --frozen-bn --freeze-trunk \
  --lr-visual 1e-3 --lr-audio 2e-4 --mirror --strong-jitter --objectness-weight 0.5 --ild-weight 0.5 --bf16 \
  --val-every 500 --val-clips 4 --seed "$seed" --keep-every 250 "${extra[@]}"
# 3. The exports that were measured.
for step in 1000 1500 2000; do
  out="$run/${name}_$step"
  [ -f "$out/model.onnx" ] || ccs-export "$run/train_$name/steps/step_00$step.safetensors" -o "$out" \
    --mirror-tta --int8 off
done
