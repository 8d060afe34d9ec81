#!/usr/bin/env bash
# BEATs on the embedded demo corpus (speech + music), two iterations, CPU-sized (called by `make demo`).
#
#   egs/demo/beats/run.sh [--exp DIR] [--corpus DIR] [--stage N] [--stop_stage M] [--size small]
#
# stage 0  synth                 writes $exp/corpus unless --corpus points at an existing demo corpus
# stage 1  manifests             speech + music notes + music keys (train, valid) → $exp/data/{train,valid}.tsv
# stage 2  iteration-1 tokens    frozen random projection of fbank patches → $exp/data/{train,valid}.rp (6.25 Hz × 8)
# stage 3  iteration 1           BEATs-tiny on the random-projection tokens   → $exp/it1/exp/checkpoint
# stage 4  tokenizer             self-distilled VQ tokenizer, teacher = iteration 1 → $exp/tok1/checkpoint
# stage 5  iteration-2 tokens    label the corpus with it                     → $exp/data/{train,valid}.bt
# stage 6  token quality         PNMI of both token sets vs phones (speech) and instruments (music) → $exp/quality.txt + .json
# stage 7  iteration 2           BEATs-tiny on the tokenizer's tokens         → $exp/it2/exp/checkpoint
#
# Every stage writes $exp/.done.stageN when it finishes; a rerun skips finished stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

exp=exp/demo_beats
corpus=          # existing demo corpus (e.g. the HuBERT demo's); empty: synthesise one in $exp/corpus
stage=0
stop_stage=7
size=small
seed=0
nj=2
steps1=500       # BEATs-tiny steps per iteration, 16 crops each (recipes/beats/tiny.yaml; it was 2000 steps of 4 crops: the same audio)
steps2=500
tok_steps=800    # tokenizer steps (dead-code restarts need a few hundred to lift codebook usage)
synth_tasks=all,intents,conversations,music_beats   # the default corpus + the IC, SD and beat sets
parse_options "$@"

[ -n "$corpus" ] || corpus=$exp/corpus
data=$exp/data
mkdir -p "$exp"

if run_stage 0 "synthesise the demo corpus ($size, seed $seed)"; then
  [ -f "$corpus/corpus.json" ] || audiossl synth "$corpus" --size "$size" --seed "$seed" --workers "$nj" --tasks "$synth_tasks" --overwrite
  stage_done 0
fi

if run_stage 1 "one manifest of speech + music per split"; then
  mkdir -p "$data"
  for split in train valid; do
    python "$here/../local/merge_manifests.py" "$data/$split.tsv" \
      "$corpus/speech/$split.tsv" "$corpus/music/notes/$split.tsv" "$corpus/music/keys/$split.tsv"
  done
  stage_done 1
fi

if run_stage 2 "iteration-1 tokens: frozen random projection (1024 codes, seed $seed)"; then
  audiossl tokenizer label random-projection "$data/train.tsv" --ext rp --seed "$seed" --save "$exp/tok0"
  audiossl tokenizer label random-projection "$data/valid.tsv" --ext rp --tokenizer "$exp/tok0"
  stage_done 2
fi

pretrain() {  # $1 = iteration, $2 = label extension, $3 = steps
  audiossl pretrain --config "$root/recipes/beats/tiny.yaml" --manifest-dir "$data" \
    --train-split train --valid-split valid --labels "$2" --out "$exp/$1/exp" --max-steps "$3"
}

if run_stage 3 "BEATs-tiny iteration 1 ($steps1 steps on random-projection tokens)"; then
  pretrain it1 rp "$steps1"
  stage_done 3
fi

if run_stage 4 "self-distilled tokenizer ($tok_steps steps, teacher = iteration 1)"; then
  audiossl tokenizer train beats --config "$root/recipes/beats/tokenizer_tiny.yaml" \
    --teacher "$exp/it1/exp/checkpoint" --manifest-dir "$data" --train-split train --valid-split valid \
    --out "$exp/tok1" --max-steps "$tok_steps"
  stage_done 4
fi

if run_stage 5 "iteration-2 tokens from the trained tokenizer"; then
  for split in train valid; do
    audiossl tokenizer label beats "$exp/tok1/checkpoint" "$data/$split.tsv" --ext bt
  done
  stage_done 5
fi

if run_stage 6 "token quality: PNMI of iteration-1 vs iteration-2 tokens (phones, instruments)"; then
  q=$exp/quality
  mkdir -p "$q"
  for src in speech music/notes; do
    name=${src//\//_}
    audiossl tokenizer label random-projection "$corpus/$src/train.tsv" --tokenizer "$exp/tok0" --out "$q/$name.rp"
    audiossl tokenizer label beats "$exp/tok1/checkpoint" "$corpus/$src/train.tsv" --out "$q/$name.bt"
  done
  python "$here/../local/utt_labels_to_frames.py" "$corpus/music/notes/train.tsv" "$corpus/music/notes/train.lbl" "$q/instrument.ali"
  for it in rp bt; do
    audiossl kmeans quality "$q/speech.$it" --ref "$corpus/speech/train.ali" --ref-rate 100 --json "$q/phone.$it.json" >/dev/null
    audiossl kmeans quality "$q/music_notes.$it" --ref "$q/instrument.ali" --ref-rate 100 --json "$q/instrument.$it.json" >/dev/null
  done
  python - "$q" "$exp/quality.json" <<'PY' | tee "$exp/quality.txt"
import json, sys
q = sys.argv[1]
rows = []
print("| BEATs tokens (8 bands, mean / best band) | phone PNMI | instrument PNMI |")
print("|---|---|---|")
for it, iteration, name in (("rp", "it1", "iteration 1: random projection"), ("bt", "it2", "iteration 2: self-distilled tokenizer")):
    ph, ins = (json.load(open(f"{q}/{ref}.{it}.json")) for ref in ("phone", "instrument"))
    print(f"| {name} | {ph['pnmi']:.3f} / {ph['pnmi_best']:.3f} | {ins['pnmi']:.3f} / {ins['pnmi_best']:.3f} |")
    for ref, d in (("phones", ph), ("instruments", ins)):
        rows.append({"name": name, "iteration": iteration, "reference": ref, "pnmi": d["pnmi"], "pnmi_best": d["pnmi_best"],
                     "frame_rate": d.get("frame_rate"), "file": f"{q}/{'phone' if ref == 'phones' else 'instrument'}.{it}.json"})
json.dump({"rows": rows}, open(sys.argv[2], "w"), indent=1)
PY
  stage_done 6
fi

if run_stage 7 "BEATs-tiny iteration 2 ($steps2 steps on the tokenizer's tokens)"; then
  pretrain it2 bt "$steps2"
  stage_done 7
fi

log "finished stages $stage..$stop_stage in $exp"
