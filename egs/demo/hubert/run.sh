#!/usr/bin/env bash
# HuBERT on the embedded demo corpus, two iterations, CPU-sized (called by `make demo`).
#
#   egs/demo/hubert/run.sh [--exp DIR] [--stage N] [--stop_stage M] [--size small] [--nj 2]
#
# stage 0  synth             writes $exp/corpus (speech + keywords + prosody + music + the IC, SD and beat sets, with labels)
# stage 1  MFCC              reads corpus/speech/{train,valid}.tsv   writes $exp/feats/mfcc/{train,valid}
# stage 2  k-means on MFCC   writes $exp/km/mfcc.km.*, labels $exp/it1/data/{train,valid}.km (100 Hz)
# stage 3  iteration 1       pretrains HuBERT-tiny on it1 labels     writes $exp/it1/exp, it1/exp/checkpoint
# stage 4  layer features    dumps layer $layer of it1               writes $exp/feats/it1_L$layer/{train,valid}
# stage 5  k-means on it1    writes $exp/km/it1.km.*, labels $exp/it2/data/{train,valid}.km (50 Hz)
# stage 6  label quality     PNMI of MFCC vs iteration-1 labels against the phone alignments (MFCC also at the
#                            model's 50 Hz, nearest frame) → $exp/quality.txt + quality.json
# stage 7  iteration 2       pretrains HuBERT-tiny on it2 labels     writes $exp/it2/exp/checkpoint
#
# Every stage writes $exp/.done.stageN when it finishes; a rerun skips finished stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

exp=exp/demo_hubert
stage=0
stop_stage=7
size=small
seed=0
nj=2
k1=100         # clusters on MFCC (fairseq uses 100 on LibriSpeech)
k2=100         # clusters on iteration-1 features (fairseq uses 500); equal to k1 so PNMI compares fairly
layer=1        # hidden layer of HuBERT-tiny to cluster (fairseq: 6 of 12 for Base)
percent=1.0    # fraction of frames per utterance used to fit k-means
steps1=800     # pretraining steps per iteration, 12 crops of 2 s each (recipes/hubert/tiny.yaml; it was 3000 steps of 3 crops: 1.07x the audio now, ~2 min on 2 idle cores)
steps2=800
synth_tasks=all,intents,conversations,music_beats   # the default corpus + the IC, SD and beat sets
parse_options "$@"

corpus=$exp/corpus
mkdir -p "$exp"

if run_stage 0 "synthesise the demo corpus ($size, seed $seed)"; then
  audiossl synth "$corpus" --size "$size" --seed "$seed" --workers "$nj" --tasks "$synth_tasks" --overwrite
  stage_done 0
fi

if run_stage 1 "MFCC features (39-dim, 100 Hz)"; then
  for split in train valid; do
    audiossl features mfcc "$corpus/speech/$split.tsv" "$exp/feats/mfcc/$split" --workers "$nj"
  done
  stage_done 1
fi

# kmeans_labels FEATS NAME K ITER: fit k-means on $exp/feats/FEATS/train into $exp/km/NAME, then write
# $exp/ITER/data/{train,valid}.km beside copies of the speech manifests (the trainer's manifest dir).
kmeans_labels() {
  local feats=$exp/feats/$1 km=$exp/km/$2 k=$3 data=$exp/$4/data
  audiossl kmeans fit "$feats/train" "$km" --k "$k" --percent "$percent" --seed "$seed"
  mkdir -p "$data"
  for split in train valid; do
    cp "$corpus/speech/$split.tsv" "$data/$split.tsv"
    audiossl kmeans label "$km" "$feats/$split" "$data/$split.km" --manifest "$corpus/speech/$split.tsv" --fairseq-dict
  done
}

if run_stage 2 "k-means (k=$k1) on MFCC, label the corpus"; then
  kmeans_labels mfcc mfcc "$k1" it1
  stage_done 2
fi

pretrain() {  # $1 = iteration name, $2 = steps, $3 = number of label classes
  audiossl pretrain --config "$root/recipes/hubert/tiny.yaml" --manifest-dir "$exp/$1/data" \
    --train-split train --valid-split valid --labels km --out "$exp/$1/exp" --max-steps "$2" "model.num_classes=$3"
}

if run_stage 3 "HuBERT-tiny iteration 1 ($steps1 steps on MFCC k-means labels)"; then
  pretrain it1 "$steps1" "$k1"
  stage_done 3
fi

if run_stage 4 "layer-$layer features of iteration 1"; then
  for split in train valid; do
    audiossl features model "$corpus/speech/$split.tsv" "$exp/feats/it1_L$layer/$split" \
      --ckpt "$exp/it1/exp/checkpoint" --layer "$layer" --workers 1
  done
  stage_done 4
fi

if run_stage 5 "k-means (k=$k2) on iteration-1 features, label the corpus"; then
  kmeans_labels "it1_L$layer" it1 "$k2" it2
  stage_done 5
fi

if run_stage 6 "label quality: MFCC labels vs iteration-1 labels (PNMI against phone alignments)"; then
  for it in it1 it2; do
    audiossl kmeans quality "$exp/$it/data/train.km" --ref "$corpus/speech/train.ali" --ref-rate 100 \
      --json "$exp/$it/quality.json"
  done
  # like for like: the 100 Hz MFCC labels also scored at the model's frame rate (nearest frame)
  rate=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['frame_rate'])" "$exp/it2/data/train.km.json")
  audiossl kmeans quality "$exp/it1/data/train.km" --ref "$corpus/speech/train.ali" --ref-rate 100 \
    --rate "$rate" --json "$exp/it1/quality_${rate%.0}hz.json"
  python - "$exp" "$rate" <<'PY' | tee "$exp/quality.txt"
import json, sys
exp, rate = sys.argv[1], sys.argv[2]
rows = [("MFCC k-means (iteration-1 targets)", "it1", f"{exp}/it1/quality.json"),
        (f"MFCC k-means at the model's rate (nearest frame)", "it1", f"{exp}/it1/quality_{rate.removesuffix('.0')}hz.json"),
        ("HuBERT-it1 k-means (iteration-2 targets)", "it2", f"{exp}/it2/quality.json")]
keys = ["pnmi", "phone_purity", "cluster_purity", "codebook_usage"]
out = []
print("| labels | frame rate | " + " | ".join(keys) + " |")
print("|---|---|" + "---|" * len(keys))
for name, it, path in rows:
    q = json.load(open(path))
    out.append({"name": name, "iteration": it, "reference": "phones", "file": path, **q})
    print(f"| {name} | {q['frame_rate']:g} Hz | " + " | ".join(f"{q[k]:.3f}" if isinstance(q.get(k), float) else str(q.get(k)) for k in keys) + " |")
json.dump({"rows": out}, open(f"{exp}/quality.json", "w"), indent=1)
PY
  stage_done 6
fi

if run_stage 7 "HuBERT-tiny iteration 2 ($steps2 steps on iteration-1 labels)"; then
  pretrain it2 "$steps2" "$k2"
  stage_done 7
fi

log "finished stages $stage..$stop_stage in $exp"
