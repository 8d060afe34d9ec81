#!/usr/bin/env bash
# The demo `make demo` runs: HuBERT-tiny, two iterations, on the synthetic demo corpus, then the
# SUPERB-style table (FBANK vs iteration 1 vs iteration 2) on every demo task. CPU-sized.
#
#   egs/demo/run.sh [--out demo_out] [--stage 1] [--stop_stage 2] [--nj 2] [--size small]
#                   [--steps1 N] [--steps2 N] [--bench_epochs N] [--tasks pr,ks,...]
#
# stage 1  egs/demo/hubert/run.sh   corpus → MFCC → k-means → HuBERT it1 → layer features → k-means → it2
#                                   writes $out/hubert (corpus/, it1/, it2/, km/, feats/)
# stage 2  audiossl bench           writes $out/bench/results.{md,csv,json} and plots/*.png
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../utils/lib.sh"

out=demo_out
stage=1
stop_stage=2
nj=2
tasks=pr,ks,sid,asv,er,instrument,pitch,key
size=small       # demo corpus size (tiny: seconds, for the tests)
steps1=          # pretraining steps of iteration 1 / 2 (empty: egs/demo/hubert/run.sh defaults)
steps2=
bench_epochs=    # epochs per head (empty: each task's default)
parse_options "$@"
exp=$out
start=$(date +%s)

if run_stage 1 "HuBERT pipeline on the demo corpus"; then
  bash "$here/hubert/run.sh" --exp "$out/hubert" --nj "$nj" --size "$size" \
    ${steps1:+--steps1 $steps1} ${steps2:+--steps2 $steps2}
  stage_done 1
fi

if run_stage 2 "SUPERB-style benchmark: FBANK vs HuBERT-tiny it1 vs it2"; then
  audiossl bench "$out/hubert/it1/exp/checkpoint" "$out/hubert/it2/exp/checkpoint" \
    --data "$out/hubert/corpus" --out "$out/bench" --tasks "$tasks" ${bench_epochs:+--epochs $bench_epochs}
  stage_done 2
fi

[ -f "$out/hubert/quality.txt" ] && cat "$out/hubert/quality.txt"
log "demo finished in $(( $(date +%s) - start )) s. Outputs:"
log "  corpus       $out/hubert/corpus"
log "  checkpoints  $out/hubert/it1/exp/checkpoint  $out/hubert/it2/exp/checkpoint"
log "  label PNMI   $out/hubert/quality.txt"
log "  results      $out/bench/results.md (+ .csv, .json, plots/)"
log "  TensorBoard  tensorboard --logdir $out/hubert"
