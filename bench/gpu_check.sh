#!/usr/bin/env bash
# The GPU check (bench/README.md), for a lent GPU. Prepare with bench/gpu_prepare.sh (here, on the CPU machine).
# Stages (STAGES="smoke" by default; name others to run them, e.g. STAGES="smoke steps"):
#   smoke    the CUDA smoke matrix (sized for under 10 minutes): each case prints one PASS, FAIL or SKIP line, and
#            the script exits 1 if any case failed. MiniLM on RTE/SST-2 (.gpu/data):
#              fp16, bf16 (SKIP where torch.cuda.is_bf16_supported() is False), compile=true at precision=auto,
#              SIGTERM mid-run then resume=true completes, AdaLoRA in fp16, a parallel=2 study (each run on its own
#              GPU when there are two: device_shared_with 0; on one GPU both say 1), and 2-process DDP
#              (accelerate launch --multi_gpu --num_processes 2; SKIP with fewer than two GPUs)
#   steps    bert-base step times per method, 16x128 and 16x384, fp16 and bf16 (random weights)  bench/step_time.py
#   trainer  MiniLM, SST-2 first 8,000 rows, 1 epoch: peftbench vs Trainer (dynamic padding + group_by_length, and
#            plain dynamic padding), full/BitFit/LoRA, fp16; then peftbench in bf16     bench/trainer_vs_peftbench.py
#   study    GLUE MRPC+RTE, 5 methods, the reference study's settings (3 epochs, its LRs): parallel=1 vs 2 vs 4, wall time
#   squad    one short SQuAD run per method on CUDA in fp16, against the first-sentence baseline
# The measurement stages (steps trainer study squad) take about 8 minutes together on one H100/H200.
# Everything lands in $OUT (the device tool brings it back) or runs/gpu_check. SMOKE=1 runs it all tiny on a CPU
# (the smoke stage's DDP case then skips: it needs two GPUs).
set -uo pipefail
cd "$(dirname "$0")/.."
STAGES="${STAGES:-smoke}"
for stage in $STAGES; do case $stage in smoke|steps|trainer|study|squad) ;;
  *) echo "unknown stage $stage: pick from smoke steps trainer study squad"; exit 2 ;; esac; done
OUT="${OUT:-runs/gpu_check}"; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TQDM_DISABLE=1 PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import hydra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
DATA=.gpu/data; MINILM=/tmp/minilm; M="model.name_or_path=$MINILM model.package=null"
if [ "${SMOKE:-0}" = 1 ]; then DEV=cpu; ROWS=200; STEPS="--steps 2 --warmup 1 --model tiny"; TRAIN="train_size=40 epochs=1"
  SQ="train_size=40 max_steps=10 task.eval_size=40 task.max_length=128 task.doc_stride=32"
  SMALL="train_size=64 epochs=1"; LONG="train_size=480 epochs=20 log_every=5"; LONG_STEPS=600
  NET="model=tiny"  # fp16 autocast is emulated on a CPU: MiniLM would take minutes a step under load
else DEV=cuda; ROWS=8000; STEPS="--steps 30 --warmup 10"; TRAIN=""; SQ="train_size=4000 max_steps=1000 task.eval_size=1000"
  SMALL="train_size=1024 epochs=1"; LONG="epochs=2 log_every=10"; LONG_STEPS=1000; NET="model=minilm_l6 $M"; fi
python3 - <<'PY' || exit 1
import torch
from transformers import AutoModel, AutoTokenizer
AutoModel.from_pretrained(".gpu/minilm-fp16", dtype=torch.float32).save_pretrained("/tmp/minilm")  # back to fp32
AutoTokenizer.from_pretrained(".gpu/minilm-fp16").save_pretrained("/tmp/minilm")
print("torch", torch.__version__, "| cuda", torch.cuda.is_available() and torch.cuda.get_device_name())
PY
t() { local s=$(date +%s%N); "$@"; local c=$?; echo "  -> $(( ($(date +%s%N) - s) / 1000000 )) ms (exit $c)"; }
FAILS=0
say() { echo "$1 $2: $3"; if [ "$1" = FAIL ]; then FAILS=$((FAILS + 1)); fi; }
# check NAME FOLDER EXPR: FOLDER's run completed on $DEV with finite metrics, and EXPR (Python over its record r) holds
check() {
  local why
  if why=$(python3 - "$2" "$3" "$DEV" <<'PY'
import json, math, sys
folder, expr, dev = sys.argv[1:]
try:
    r = json.load(open(f"{folder}/result.json"))
except (OSError, ValueError) as e:
    print(f"no readable result.json ({e})"); sys.exit(1)
m = r.get("metrics") or {}
facts = (f"{r.get('status')} on {r.get('device')} ({(r.get('machine') or {}).get('gpu')}), precision "
         f"{r.get('precision')}, {r.get('train_steps')} steps in {r.get('train_time_s')} s, "
         f"{r.get('primary_metric')} {m.get(r.get('primary_metric'))}")
ok = (r.get("status") == "completed" and str(r.get("device")).startswith(dev) and bool(m)
      and all(isinstance(v, (int, float)) and math.isfinite(v) for v in m.values()) and eval(expr, {"r": r, "dev": dev}))
print(facts + ("" if ok else f"; expected: completed on {dev}, finite metrics, {expr}"))
sys.exit(0 if ok else 1)
PY
  ); then say PASS "$1" "$why"; else say FAIL "$1" "$why (log: $2.log)"; fi
}
# case NAME EXPR ARGS...: `peftbench train ARGS out=$S/NAME`, its output in $S/NAME.log, then check
case_run() { local name=$1 expr=$2; shift 2
  python3 -m peftbench.cli train "$@" out="$S/$name" > "$S/$name.log" 2>&1; check "$name" "$S/$name" "$expr"; }
gpus() { python3 -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"; }
for stage in $STAGES; do echo "== $stage =="; case $stage in
smoke)
  S="$OUT/smoke"; rm -rf "$S"; mkdir -p "$S"
  R=($NET data_dir=$DATA device=$DEV tracking.mode=disabled task=rte $SMALL)
  case_run fp16 "r['precision'] == 'fp16' and r['identity_version'] == 2 and (dev == 'cpu' or r['machine']['gpu'])" \
      "${R[@]}" method=lora precision=fp16
  if [ "$DEV" = cpu ] || python3 -c "import sys, torch; sys.exit(not torch.cuda.is_bf16_supported())"; then
    case_run bf16 "r['precision'] == 'bf16'" "${R[@]}" method=lora precision=bf16
  else say SKIP bf16 "torch.cuda.is_bf16_supported() is False on this GPU"; fi
  case_run compile "r['config']['compile'] and r['precision'] in (('no',) if dev == 'cpu' else ('fp16', 'bf16'))" \
      "${R[@]}" method=full compile=true
  case_run adalora "r['run']['method'] == 'adalora' and r['trainable_params'] > 0" "${R[@]}" method=adalora precision=fp16
  # SIGTERM once the loop has logged a step: the run checkpoints and exits non-zero; resume=true then completes it
  L=($NET data_dir=$DATA device=$DEV tracking.mode=disabled task=sst2 method=lora precision=fp16 $LONG
     checkpoint_every=null out="$S/sigterm")
  python3 -m peftbench.cli train "${L[@]}" > "$S/sigterm.log" 2>&1 & pid=$!
  for _ in $(seq 1200); do grep -qs "step [0-9]*/" "$S/sigterm/train.log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  kill -TERM $pid 2>/dev/null; wait $pid; code=$?
  if [ $code -ne 0 ] && [ -f "$S/sigterm/checkpoint.pt" ]; then
    python3 -m peftbench.cli train "${L[@]}" resume=true >> "$S/sigterm.log" 2>&1
    if grep -qs "resumed from checkpoint.pt at step" "$S/sigterm/train.log"; then
      check sigterm "$S/sigterm" "r['train_steps'] == $LONG_STEPS"
    else say FAIL sigterm "resume=true did not say 'resumed from' in $S/sigterm/train.log (log: $S/sigterm.log)"; fi
  else say FAIL sigterm "SIGTERM gave exit $code and checkpoint.pt $( [ -f "$S/sigterm/checkpoint.pt" ] && echo saved || echo missing); expected non-zero and saved (log: $S/sigterm.log)"; fi
  # parallel=2: two runs at once; with two GPUs each has its own (0 others on it), on one GPU they share it (1)
  n=$(gpus); shared=$([ "$n" -ge 2 ] && echo 0 || echo 1); [ "$DEV" = cpu ] && shared=None
  python3 -m peftbench.cli study glue $NET data_dir=$DATA device=$DEV tracking.mode=disabled tasks=[rte] \
      methods=[bitfit,lora] $SMALL parallel=2 out="$S/parallel" > "$S/parallel.log" 2>&1
  for m in bitfit lora; do check "parallel-$m" "$S/parallel/rte/$m/seed42" "r['device_shared_with'] == $shared"; done
  if [ "$n" -ge 2 ]; then
    python3 -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
        -m peftbench.cli train "${R[@]}" method=lora precision=fp16 out="$S/ddp" > "$S/ddp.log" 2>&1
    check ddp "$S/ddp" "r['num_processes'] == 2"
  else say SKIP ddp "$n GPU(s): 2-process DDP needs two"; fi
  echo "smoke: $FAILS failed" ;;
steps)
  for p in fp16 bf16; do t python3 bench/step_time.py --device $DEV --precision $p $STEPS --out "$OUT/steps-$p"; done ;;
trainer)
  t python3 bench/trainer_vs_peftbench.py --device $DEV --rows $ROWS --rounds 1 --model-dir $MINILM --data-dir $DATA \
      --runners peftbench trainer_grouped trainer_dynamic --methods full bitfit lora --out "$OUT/trainer-fp16"
  t python3 bench/trainer_vs_peftbench.py --device $DEV --precision bf16 --rows $ROWS --rounds 1 --model-dir $MINILM \
      --data-dir $DATA --runners peftbench --methods full bitfit lora --out "$OUT/trainer-bf16" ;;
study)
  for n in 1 2 4; do
    echo "parallel=$n"; t python3 -m peftbench.cli study glue $M data_dir=$DATA tasks=[mrpc,rte] parallel=$n \
        out="$OUT/study-p$n" tracking.mode=disabled $TRAIN device=$DEV > "$OUT/study-p$n.log" 2>&1
    tail -n 1 "$OUT/study-p$n.log"
  done ;;
squad)
  declare -A LR=([full]=1e-4 [bitfit]=5e-3 [bitfit_subset]=5e-3 [lora]=2e-3 [prompt]=1e-2)
  for m in full bitfit bitfit_subset lora prompt; do
    t python3 -m peftbench.cli train task=squad method=$m lr=${LR[$m]} $M task.data_dir=$DATA/squad-devsplit $SQ \
        schedule=steps precision=fp16 device=$DEV tracking.mode=disabled out="$OUT/squad/$m" 2>&1 | tail -n 2
  done
  python3 - "$OUT/squad" <<'PY'
import json, sys
from pathlib import Path
from peftbench.reports.baselines import baseline
for f in sorted(Path(sys.argv[1]).glob("*/result.json")):
    r = json.loads(f.read_text()); b = baseline(r); f1 = r.get("metrics", {}).get("f1")
    ok = r["status"] == "completed" and f1 is not None and b is not None and f1 > b
    print(f"squad {r['run']['method']}: {r['status']}, F1 {f1}, first-sentence baseline {b}, "
          f"{r.get('train_samples_per_s')} samples/s, {r.get('precision')}: {'BEATS' if ok else 'DOES NOT BEAT'} it")
PY
  ;;
esac; done
for f in "$OUT"/steps-*/step_time.md "$OUT"/trainer-*/results.md; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done
[ "$FAILS" -eq 0 ] || exit 1
