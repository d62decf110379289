# Sourced by default_lone.sh and default_soup.sh (not a recipe of its own).
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
