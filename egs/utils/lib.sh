# Shared helpers for egs/*/run.sh (source it). Kaldi/icefall conventions:
#   --stage N --stop_stage M   run stages N..M;  any --name value  sets $name (dashes → underscores)
#   .done markers              a finished stage is skipped on rerun; delete the marker to redo it
log() { echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${0##*/}:${BASH_LINENO[0]}) $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# parse_options "$@": every --key value pair must name a variable already defined by the script;
# bare key=value words (e.g. optim.lr=1e-4 data.max_tokens=2800000) are collected in $overrides for
# the trainer (expand with ${overrides[@]+"${overrides[@]}"}).
overrides=()
parse_options() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --help|-h) usage_and_exit ;;
      --*=*) key=${1%%=*}; val=${1#*=}; shift ;;
      --*) [ $# -ge 2 ] || die "option $1 needs a value"; key=$1; val=$2; shift 2 ;;
      [a-z]*=*) overrides+=("$1"); shift; continue ;;
      *) die "unexpected argument '$1' (options are --name value; trainer overrides are key=value)" ;;
    esac
    name=${key#--}; name=${name//-/_}
    [ -n "${!name+x}" ] || die "unknown option --${key#--} (see --help)"
    printf -v "$name" '%s' "$val"
  done
}

usage_and_exit() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }

# run_stage N "description": true when stage N is in [stage, stop_stage] and not yet done.
# Mark completion with `stage_done N`, which also appends the stage's start and end to
# $exp/stage_times.tsv (recipe, stage, description, start and end in epoch seconds, seconds; a redone
# stage appends a new line, readers keep the last one per recipe and stage).
_stage_t0=()
_stage_desc=()
run_stage() {
  local n=$1; shift
  [ "$n" -ge "$stage" ] && [ "$n" -le "$stop_stage" ] || return 1
  if [ -f "$exp/.done.stage$n" ]; then log "stage $n: $* — already done (rm $exp/.done.stage$n to redo)"; return 1; fi
  log "stage $n: $*"
  _stage_t0[$n]=$(date +%s)
  _stage_desc[$n]=$*
  return 0
}
stage_done() {
  local n=$1 end t0 f recipe=$0
  case $recipe in */egs/*) recipe=egs/${recipe##*/egs/} ;; esac
  mkdir -p "$exp"
  touch "$exp/.done.stage$n"
  end=$(date +%s)
  t0=${_stage_t0[$n]:-$end}
  f=$exp/stage_times.tsv
  [ -s "$f" ] || printf 'recipe\tstage\tdescription\tstart\tend\tseconds\n' > "$f"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$recipe" "$n" "${_stage_desc[$n]:-}" "$t0" "$end" "$((end - t0))" >> "$f"
}

# print_stage_times DIR: the stage times of every recipe that wrote DIR/**/stage_times.tsv (last run
# of each stage), nested pipelines first.
print_stage_times() {
  local f
  { find "$1" -mindepth 2 -maxdepth 3 -name stage_times.tsv | sort; find "$1" -maxdepth 1 -name stage_times.tsv; } |
  while read -r f; do
    awk -F'\t' 'NR > 1 { key = $1 FS $2; if (!(key in row)) order[n++] = key; row[key] = $0 }
      END { for (i = 0; i < n; i++) { split(row[order[i]], c, FS); printf "  %-24s stage %-2s %6s s  %s\n", c[1], c[2], c[6], c[3] } }' "$f"
  done
}

# Use the project's venv when the caller has not activated one.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$(dirname "${BASH_SOURCE[0]}")/../../.venv/bin/python" ]; then
  PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.venv/bin" && pwd):$PATH"
fi
