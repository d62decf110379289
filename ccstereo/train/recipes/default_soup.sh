#!/usr/bin/env bash
# Step 7: the mean of two runs' weights ("model soup", docs/quality.md, "Real scenes", step 7).
# - Run A is default_lone.sh's (step 6): its weights at step 1000.
# - Run B is the same training (same start, options and seed) on 600 more lone-object scenes of the same kind
#   (seeds 2202-2205): its weights at step 1500.
# Both start from one initialisation with a frozen trunk, so the mean of their weights is a model of its own; the two
# checkpoints were chosen on validation scenes (seeds 9200, 9300), never on the tables' scenes.
# Resumable: run it again with the same RUN folder and it skips what it already wrote.
#   bash ccstereo/train/recipes/default_soup.sh RUN_FOLDER
# Needs: pip install -e ".[export,train,cpu]", apt-get (real assets, as default_real_scenes.sh).
set -euo pipefail
run=${1:?usage: default_soup.sh RUN_FOLDER}
mkdir -p "$run"
# 1. Run A, with its data (step 6's recipe; it also exports step 6 to RUN/model_lone).
bash "$(dirname "$0")/default_lone.sh" "$run"
# 2. 600 more lone-object scenes (seeds 2202-2205, made as default_lone.sh makes its 300) and RUN/mix_more.
. "$(dirname "$0")/lone_scenes.bash"
run_b_scenes "$run"
# 3. Run B: run A's training line on the larger mix.
mix="$run/mix_more"
ccs-train "$mix" --train-split "$mix/splits/split1/train.txt" --val-split "$mix/splits/split1/val.txt" \
  -o "$run/train_more" --steps 2000 --batch-size 16 --visual-trunk efficientnet_lite0 --lite0-blocks 11 \
  --picture-scale 0.5 --resnet-width 32 --aspp-hidden 128 --init "$run/init.onnx" --frozen-bn --freeze-trunk \
  --lr-visual 1e-3 --lr-audio 2e-4 --mirror --strong-jitter --objectness-weight 0.5 --ild-weight 0.5 --bf16 \
  --val-every 500 --val-clips 4 --seed 0 --keep-every 250
# 4. The mean of run A's step 1000 and run B's step 1500, exported without int8 (as steps 5 and 6).
[ -f "$run/soup.safetensors" ] || python -m ccstereo.train.average "$run/soup.safetensors" \
  "$run/train_lone/steps/step_001000.safetensors" "$run/train_more/steps/step_001500.safetensors"
[ -f "$run/model_soup/model.onnx" ] || ccs-export "$run/soup.safetensors" -o "$run/model_soup" --mirror-tta --int8 off
