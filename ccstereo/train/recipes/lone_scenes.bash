# Sourced by default_lone.sh, default_soup.sh and default_variants.sh (not a recipe of its own).
# lone_scenes RUN NAME:SEED [NAME:SEED ...]: 150 lone-object scenes (every pasted object sounds, nothing else is
# pasted; half photo cards, 70 % over the training footage) into RUN/NAME for each seed, two at a time, each once.
lone_scenes() {
  local run=$1 spec name pid
  shift
  while [ $# -gt 0 ]; do
    local pids=()
    for spec in "$1" "${2:-}"; do
      [ -n "$spec" ] || continue
      name=${spec%%:*}
      [ -f "$run/$name/metadata.json" ] && continue
      ccs-synth "$run/$name" --kind real-train --clips 150 --seconds 8 --seed "${spec#*:}" --hrtf kemar,fabian \
        --quiet --no-mp4 --centred-share 0 --card-share 0.5 --footage-share 0.7 --max-silent 0 &
      pids+=("$!")
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    shift
    if [ $# -gt 0 ]; then shift; fi
  done
}

# The 15 scene folders of run B's mix (RUN/mix_more): default_lite0.sh's, then the 900 lone-object scenes.
RUN_B_SETS=(data_a data_b data_c data_d shapes empty cards_a cards_b cards_c lone_a lone_b lone_c lone_d lone_e lone_f)

# run_b_scenes RUN: run B's scenes (default_soup.sh), once: the 900 lone-object scenes of seeds 2200-2205 (those made
# already are kept) and RUN/mix_more, them with default_lite0.sh's scenes (which must be in RUN already).
run_b_scenes() {
  local run=$1
  lone_scenes "$run" lone_a:2200 lone_b:2201 lone_c:2202 lone_d:2203 lone_e:2204 lone_f:2205
  [ -f "$run/mix_more/metadata.json" ] || python -m ccstereo.synth.combine "$run/mix_more" "${RUN_B_SETS[@]/#/$run/}"
}
