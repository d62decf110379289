#!/usr/bin/env bash
# default_lite0_cut.sh fed pictures at half the size: EfficientNet-Lite0's first 11 blocks (ImageNet weights, FROZEN)
# take a 224x112 crop of a 240x120 picture, and their stride-16 map is the 7 x 14 grid itself (no 2 x 2 pooling;
# --picture-scale 0.5, ModelConfig.visual_stride 16): a quarter of the trunk's arithmetic.
# Why: the 11-block cut at full size finds objects over unseen footage (it was the best model on the independent
# check's kind of scene) but runs 1.14-1.23x the default's time on CPUs where the default runs int8 (its trunk does not
# survive int8). benchmarks/trunk_probe.py --trunks lite0:11 lite0:11@0.5 (AMD EPYC Zen 4): lone objects over the
# unseen city clip 87 % / 90 %, photo cards 82 % / 76 %, the 40 scenes' one-object frames 88 % / 83 %.
# Same data, seeds, losses, rates and start as default_lite0_cut.sh.
# Step 5 (the bundled default since 2026-12-07): the same with --strong-jitter (wider brightness, contrast and colour
# changes of the pictures, some grey): lone objects over the held-out city footage 71 % -> 77 % (docs/quality.md, "Real
# scenes"). JITTER=mild gives step 4 (the default before it) from the same data and start.
# Resumable: run it again with the same RUN folder and it skips the data it already wrote and continues training
# from the last checkpoint.
#   bash ccstereo/train/recipes/default_lite0_half.sh RUN_FOLDER            # step 5
#   JITTER=mild bash ccstereo/train/recipes/default_lite0_half.sh RUN_FOLDER  # step 4
# Needs: pip install -e ".[export,train,cpu]", apt-get (real assets, as default_real_scenes.sh).
set -euo pipefail
run=${1:?usage: default_lite0_half.sh RUN_FOLDER}
case "${JITTER:-strong}" in
  strong) jitter=--strong-jitter ;;  # step 5
  mild) jitter=--mild-jitter ;;      # step 4
  *) echo "JITTER must be strong or mild, not $JITTER" >&2; exit 2 ;;
esac
mkdir -p "$run"
# 1. default_lite0.sh's scenes (the same seeds, the same scenes), made by it.
DATA_ONLY=1 bash "$(dirname "$0")/default_lite0.sh" "$run"
# 2. Lite0's first 11 blocks from ImageNet, frozen; audio network and fusion from the default graph; a new ASPP head.
if [ ! -f "$run/init.onnx" ]; then
  git -C "$(dirname "$0")" show 1cf403b:runtime/assets/default/model.onnx > "$run/init.onnx.part"
  mv "$run/init.onnx.part" "$run/init.onnx"
fi
ccs-train "$run/mix" --train-split "$run/mix/splits/split1/train.txt" --val-split "$run/mix/splits/split1/val.txt" \
  -o "$run/train" --steps 2000 --batch-size 16 --visual-trunk efficientnet_lite0 --lite0-blocks 11 \
  --picture-scale 0.5 --resnet-width 32 --aspp-hidden 128 --init "$run/init.onnx" --frozen-bn --freeze-trunk \
  --lr-visual 1e-3 --lr-audio 2e-4 --mirror "$jitter" --objectness-weight 0.5 --ild-weight 0.1 --bf16 \
  --val-every 500 --val-clips 4 --seed 0
# 3. The export, without int8: this trunk's int8 graph measured 13.9 dB against fp32 at full size (default_lite0_cut.sh),
#    far under ccs-export's floor; fp32 and bf16 are offered.
[ -f "$run/model/model.onnx" ] || ccs-export "$run/train/last.safetensors" -o "$run/model" --mirror-tta --int8 off
