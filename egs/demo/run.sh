#!/usr/bin/env bash
# The demo `make demo` runs on the synthetic demo corpus, CPU-sized: HuBERT-tiny (two k-means
# iterations), BEATs-tiny (random-projection tokens, then a self-distilled tokenizer), MERT-tiny
# (RVQ-VAE codes + CQT), WavLM-tiny (HuBERT's iteration-1 labels + utterance mixing), data2vec2-tiny
# (EMA teacher, no labels), then the SUPERB-style tables against FBANK and a one-page report.
#
#   egs/demo/run.sh [--out demo_out] [--stage 1] [--stop_stage 9] [--nj 2] [--jobs 2] [--size small]
#                   [--steps1 N] [--steps2 N] [--beats_steps N] [--tok_steps N] [--rvq_steps N]
#                   [--mert_steps N] [--wavlm_steps N] [--d2v2_steps N] [--bench_epochs N] [--bench_amp auto]
#                   [--tasks pr,ks,...]
#
# stage 1  egs/demo/hubert/run.sh    corpus → MFCC → k-means → HuBERT it1 → layer features → k-means → it2  ($out/hubert)
# stage 2  egs/demo/beats/run.sh     random projection → BEATs it1 → tokenizer → BEATs it2  ($out/beats, same corpus)
# stage 3  egs/demo/mert/run.sh      RVQ-VAE on the music → codes → MERT-tiny  ($out/mert, same corpus)
# stage 4  egs/demo/wavlm/run.sh     WavLM-tiny on HuBERT's iteration-1 (MFCC k-means) labels  ($out/wavlm)
# stage 5  egs/demo/data2vec2/run.sh data2vec2-tiny on the speech audio alone  ($out/data2vec2)
# stage 6  audiossl bench            FBANK vs HuBERT it1 vs it2 vs WavLM vs data2vec2 on every demo speech/music task
#                                    (PR, ASR greedy + LM, KS, IC, SID, ASV, ER, SD, instrument, pitch, key, beat) → $out/bench/hubert
# stage 7  audiossl bench            FBANK vs BEATs it1 vs it2 on the demo tasks (PR/ASR on ×8 tiled frames) → $out/bench/beats
# stage 8  audiossl bench            FBANK vs HuBERT it2 vs MERT on every demo task → $out/bench/mert
#                                    (7 and 8 copy the FBANK / HuBERT it2 pairs stage 6 finished: --reuse)
# stage 9  audiossl report           $out/report.md: curves, PNMI, bench CIs, score vs pretraining compute, claims
# With --jobs 2 (default) the stages run in two lanes of one thread each (two single-thread processes get
# 1.3x the work of one two-thread process through a tiny model's step on 2 cores): after the corpus and the
# MFCC labels, lane A = stages 1, 4 and five speech-bench rows (the data2vec2 row from lane B's model),
# lane B = stages 2, 3, 5, 7, MERT's bench row and stage 8 (the table, once lane A is done); then stages 6
# (the table from the finished rows) and 9. --jobs 1 runs stages 1..9 in order.
# The corpus includes the opt-in IC / SD / beat sets (`audiossl synth --tasks all,intents,conversations,music_beats`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../utils/lib.sh"

out=demo_out
stage=1
stop_stage=9
nj=2
jobs=2           # 2: independent pipelines and bench rows run in two lanes side by side, one thread each; 1: in order, all threads
tasks=pr,asr,ks,ic,sid,asv,er,sd,instrument,pitch,key,beat
# BEATs gives 6.25 frames/s, fewer than the phones/letters of an utterance: the bench tiles its frames ×8
# for the CTC heads of pr/asr (TaskSpec.ctc_tile_rate, as ESPnet's S3prlFrontend tile_factor)
beats_tasks=pr,asr,ks,ic,sid,er,sd,instrument,pitch,key,beat
mert_tasks=$tasks  # MERT's row on every task (#17); claim (c) reads pitch, key, instrument
size=small       # demo corpus size (tiny: seconds, for the tests)
steps1=          # HuBERT steps of iteration 1 / 2 (empty: egs/demo/hubert/run.sh defaults)
steps2=
beats_steps=     # BEATs steps per iteration, tokenizer steps (empty: egs/demo/beats/run.sh defaults)
tok_steps=
rvq_steps=       # RVQ-VAE steps, MERT steps (empty: egs/demo/mert/run.sh defaults)
mert_steps=
wavlm_steps=     # WavLM-tiny steps, data2vec2-tiny steps (empty: egs/demo/{wavlm,data2vec2}/run.sh defaults)
d2v2_steps=
bench_epochs=    # epochs per head (empty: each task's default)
bench_amp=auto   # head training precision (audiossl bench --amp): auto = bf16 where the CPU multiplies it in hardware
parse_options "$@"
exp=$out
start=$(date +%s)
corpus=$out/hubert/corpus
epochs=${bench_epochs:+--epochs $bench_epochs}
bench_opts=(--amp "$bench_amp" $epochs)

hubert_pipeline() {  # hubert_pipeline NJ [--stop_stage N]
  bash "$here/hubert/run.sh" --exp "$out/hubert" --nj "$1" --size "$size" \
    ${steps1:+--steps1 $steps1} ${steps2:+--steps2 $steps2} "${@:2}"
}
stage_1() {
  if run_stage 1 "HuBERT pipeline on the demo corpus"; then hubert_pipeline "$nj"; stage_done 1; fi
}
stage_2() {
  if run_stage 2 "BEATs pipeline on the demo corpus (speech + music)"; then
    bash "$here/beats/run.sh" --exp "$out/beats" --corpus "$corpus" --nj "$nj" \
      ${beats_steps:+--steps1 $beats_steps --steps2 $beats_steps} ${tok_steps:+--tok_steps $tok_steps}
    stage_done 2
  fi
}
stage_3() {
  if run_stage 3 "MERT pipeline on the demo music"; then
    bash "$here/mert/run.sh" --exp "$out/mert" --corpus "$corpus" --nj "$nj" \
      ${rvq_steps:+--rvq_steps $rvq_steps} ${mert_steps:+--steps $mert_steps}
    stage_done 3
  fi
}
stage_4() {
  if run_stage 4 "WavLM pipeline on the demo speech (HuBERT's iteration-1 labels)"; then
    bash "$here/wavlm/run.sh" --exp "$out/wavlm" --corpus "$corpus" --labels "$out/hubert/it1/data" \
      ${wavlm_steps:+--steps $wavlm_steps}
    stage_done 4
  fi
}
stage_5() {
  if run_stage 5 "data2vec 2.0 pipeline on the demo speech (no labels)"; then
    bash "$here/data2vec2/run.sh" --exp "$out/data2vec2" --corpus "$corpus" --nj "$nj" \
      ${d2v2_steps:+--steps $d2v2_steps}
    stage_done 5
  fi
}
speech_rows=("$out/hubert/it1/exp/checkpoint" "$out/hubert/it2/exp/checkpoint" "$out/wavlm/exp/checkpoint"
             "$out/data2vec2/exp/checkpoint")
stage_6() {
  if run_stage 6 "SUPERB-style benchmark: FBANK vs HuBERT-tiny it1 vs it2 vs WavLM-tiny vs data2vec2-tiny"; then
    audiossl bench "${speech_rows[@]}" --data "$corpus" --out "$out/bench/hubert" --tasks "$tasks" "${bench_opts[@]}"
    stage_done 6
  fi
}
# speech_bench_rows UPSTREAM... [--no-fbank]: some rows of stage 6's table, run inside a lane. The bench
# keeps each finished (upstream, task) pair under $out/bench/hubert/runs/, so stage 6 then only reads them
# and writes the table once (--no-report here).
speech_bench_rows() {
  [ 6 -ge "$stage" ] && [ 6 -le "$stop_stage" ] && [ ! -f "$exp/.done.stage6" ] || return 0
  log "stage 6, in this lane: bench rows $*"
  audiossl bench "$@" --data "$corpus" --out "$out/bench/hubert" --tasks "$tasks" --no-report "${bench_opts[@]}"
}
stage_7() {
  if run_stage 7 "SUPERB-style benchmark: FBANK vs BEATs-tiny it1 vs it2"; then
    audiossl bench "$out/beats/it1/exp/checkpoint" "$out/beats/it2/exp/checkpoint" \
      --data "$corpus" --out "$out/bench/beats" --tasks "$beats_tasks" --reuse "$out/bench/hubert" "${bench_opts[@]}"
    stage_done 7
  fi
}
stage_8() {
  if run_stage 8 "MERT benchmark: FBANK vs HuBERT-tiny it2 vs MERT-tiny"; then
    audiossl bench "$out/hubert/it2/exp/checkpoint" "$out/mert/mert/exp/checkpoint" \
      --data "$corpus" --out "$out/bench/mert" --tasks "$mert_tasks" --reuse "$out/bench/hubert" "${bench_opts[@]}"
    stage_done 8
  fi
}
stage_9() {
  if run_stage 9 "one-page report: curves, PNMI, bench CIs, compute, claims"; then
    audiossl report "$out" --out "$out/report.md"
    stage_done 9
  fi
}

# lane NAME FUNCTION: run FUNCTION in the background on one thread, its output prefixed with [NAME];
# $exp/.lane_NAME.end appears when it has ended, failed or not (the other lane may wait for it).
lane() {
  ( set -o pipefail; trap "touch '$exp/.lane_$1.end'" EXIT  # a trap, not `|| rc=$?`, which turns set -e off inside
    ( export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1; nj=1; "$2" ) 2>&1 | sed -u "s/^/[$1] /" >&2 ) &
}
# wait_for FILE LANE: until FILE exists or LANE has ended; true when FILE exists.
wait_for() {
  until [ -f "$1" ] || [ -f "$exp/.lane_$2.end" ]; do sleep 2; done
  [ -f "$1" ]
}
# MERT's row of stage 8's table (--no-report); stage 8 then copies the FBANK and HuBERT it2 pairs from
# the speech table and writes the table.
mert_bench_row() {
  [ 8 -ge "$stage" ] && [ 8 -le "$stop_stage" ] && [ ! -f "$exp/.done.stage8" ] && [ -f "$exp/.done.stage3" ] || return 0
  log "stage 8, in this lane: MERT's bench row"
  audiossl bench "$out/mert/mert/exp/checkpoint" --no-fbank --data "$corpus" --out "$out/bench/mert" \
    --tasks "$mert_tasks" --no-report "${bench_opts[@]}"
}
# Lane A: HuBERT (both iterations) → WavLM (on HuBERT's iteration-1 labels) → four speech-bench rows,
# FBANK first (stages 7 and 8 in lane B then copy its rows, and HuBERT it2's, instead of training them
# again) → the data2vec 2.0 row (its model comes from lane B, long finished by then).
lane_a() {
  if $stage1_todo; then hubert_pipeline 1; stage_done 1; fi
  stage_4
  speech_bench_rows fbank "${speech_rows[0]}" "${speech_rows[1]}" "${speech_rows[2]}"
  if wait_for "$exp/.done.stage5" B; then speech_bench_rows "${speech_rows[3]}" --no-fbank
  else log "data2vec2 was not trained (lane B ended first): its bench row is left to stage 6"; fi
}
# Lane B: BEATs → MERT → data2vec 2.0 → the BEATs bench → MERT's bench row → stage 8's table, once lane A
# has finished the rows it copies.
lane_b() {
  stage_2; stage_3; stage_5; stage_7
  mert_bench_row
  wait_for "$exp/.lane_A.end" A || true
  stage_8
}

if [ "$jobs" -ge 2 ]; then
  stage1_todo=false
  if run_stage 1 "HuBERT pipeline on the demo corpus"; then
    stage1_todo=true
    hubert_pipeline "$nj" --stop_stage 2  # the corpus and the MFCC k-means labels, which both lanes read
  fi
  log "two lanes, one thread each: A = stages 1, 4 + speech-bench rows; B = stages 2, 3, 5, 7, MERT's bench row, 8"
  rm -f "$exp/.lane_A.end" "$exp/.lane_B.end"  # before either lane starts: neither may see the other's old marker
  lane A lane_a; pid_a=$!
  lane B lane_b; pid_b=$!
  failed=
  wait "$pid_a" || failed="A "
  wait "$pid_b" || failed="${failed}B"
  [ -z "$failed" ] || die "lane $failed failed (its lines are prefixed [A]/[B] above); rerun the same command to resume"
  stage_6; stage_9
else
  stage_1; stage_2; stage_3; stage_4; stage_5; stage_6; stage_7; stage_8; stage_9
fi

for f in "$out/hubert/quality.txt" "$out/beats/quality.txt"; do [ -f "$f" ] && cat "$f"; done
for b in hubert beats mert; do [ -f "$out/bench/$b/results.md" ] && { echo; cat "$out/bench/$b/results.md"; }; done
log "demo finished in $(( $(date +%s) - start )) s. Outputs:"
log "  corpus       $corpus"
log "  checkpoints  $out/{hubert,beats}/it{1,2}/exp/checkpoint  $out/mert/mert/exp/checkpoint  $out/{wavlm,data2vec2}/exp/checkpoint"
log "  token PNMI   $out/hubert/quality.txt  $out/beats/quality.txt  $out/{wavlm,data2vec2}/quality.json"
log "  results      $out/bench/{hubert,beats,mert}/results.md (+ .csv, .json, plots/)"
log "  TensorBoard  tensorboard --logdir $out"
log "stage times (seconds):"
print_stage_times "$out" >&2
if [ -f "$out/report.md" ]; then log "report: $out/report.md (figures in $out/report_figures/)"; fi
