#!/usr/bin/env bash
# Step 4 candidate (sounds that belong to their objects), in one file: step 3's run (default_centred.sh: the
# bundled default of 1cf403b) trained further on the same scenes plus 200 scenes whose every sound belongs to what
# makes it (`ccs-synth --paired-sounds`: a sounding object plays only its own recording, the silent ones are any
# others, a scene with no sounding object plays a sound none of its objects would make). In the other scenes most
# objects play a random voice, instrument or everyday sound, so only the picture can say which object sounds; here
# the sound says it too. Mixed in, not alone: alone, its centred scenes would teach that a voice nobody pictured
# is centred, while real videos give people voices. No teacher; the graph and its speed do not change.
# Resumable: run it again with the same RUN folder and it skips the data it already wrote and continues training
# from the last checkpoint.
#   bash ccstereo/train/recipes/default_paired.sh RUN_FOLDER
# Needs: pip install -e ".[export,train,cpu]", apt-get (real assets, as default_real_scenes.sh).
set -euo pipefail
run=${1:?usage: default_paired.sh RUN_FOLDER}
mkdir -p "$run"
scenes() {  # scenes(folder, seed, kind, clips, extra...): once
  [ -f "$1/metadata.json" ] || ccs-synth "$1" --kind "$3" --clips "$4" --seconds 8 --seed "$2" \
    --hrtf kemar,fabian --quiet "${@:5}"
}
# 1. Step 3's scenes: 600 real-looking (seeds 2000-2003), 120 coloured-shape, 150 with no visible source (2004).
scenes "$run/data_a" 2000 real-train 150 --no-mp4 & first=$!
scenes "$run/data_b" 2001 real-train 150 --no-mp4 & second=$!
wait "$first" && wait "$second"
scenes "$run/data_c" 2002 real-train 150 --no-mp4 & first=$!
scenes "$run/data_d" 2003 real-train 150 --no-mp4 & second=$!
wait "$first" && wait "$second"
scenes "$run/shapes" 1000 shapes 120 --no-mp4
scenes "$run/empty" 2004 real-train 150 --no-mp4 --centred-share 1 --max-silent 0
# 200 scenes whose sounds belong to their objects (seeds 2005 and 2006).
scenes "$run/paired_a" 2005 real-train 100 --no-mp4 --paired-sounds & first=$!
scenes "$run/paired_b" 2006 real-train 100 --no-mp4 --paired-sounds & second=$!
wait "$first" && wait "$second"
[ -f "$run/mix/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix" "$run/data_a" "$run/data_b" \
  "$run/data_c" "$run/data_d" "$run/shapes" "$run/empty" "$run/paired_a" "$run/paired_b"
# 2. Warm start from step 3's graph, step 3's losses and rates.
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
