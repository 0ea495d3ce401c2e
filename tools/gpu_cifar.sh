#!/usr/bin/env bash
# Issue 13's GPU part as one prepared script for a lent device session (docs/gpu.md says how to call it).
#
# A session gets 15 minutes of device time and 10 minutes per command, and a warm machine keeps
# build/ between calls only while it is held. So the work is calls made back to back, each resumable:
#   bash tools/gpu_cifar.sh train 8     # set-up, a throughput probe, float training sized to 8 minutes
#   bash tools/gpu_cifar.sh quant 2     # QAT at 8 and 4 bits, exports, the integer model on the test set
# 'train' also returns the finished float run's weights (OUT/float.tar.NN + OUT/float.json, tools/gpu_carry.py):
# a later session carries them as FLOAT_CARRY and runs 'quant' without training again (docs/gpu.md).
# And, in a session of its own (it needs no float run):
#   bash tools/gpu_cifar.sh ablate 9    # the paper's ablation with equal budgets (benchmarks/ablation.py)
# Every step skips what WORK already holds, so a cut-off call is simply run again.
# What comes back: OUT/gpu_<stage>.tar.gz (logs, metrics, golden.json files), remade after each step,
# so a call stopped at its limit still returns what it finished; after 'quant', OUT/export8.tar.gz and
# OUT/export4.tar.gz (written before the integer model runs, so a call cut off there still returns them);
# after 'ablate', results/ablation_<dataset>.{md,json,png} in gpu_ablate.tar.gz.
#
# Environment (defaults in brackets):
#   DATASET [cifar10]  CONFIG [saformer-4-384; saformer-2-64 for digits]  BATCH [256]  LR [2e-3]
#   WARMUP [2]  EPOCHS [sized from the probe]  QAT_EPOCHS [2]  SAMPLE [64: images the numpy model checks]
#   GOLDEN_LIMIT [all: test images of the integer model]  PROBES [on; off: no attention diagnostics, 1 pass, not 3]
#   ARCHIVES [.c10: the two cifar10-jpeg archives]  WHEELS [.whl: brevitas and its pure-Python needs]
#   WORK [build/gpu]  OUT [the device tool's $OUT; else WORK/out]  PY [python3]
#   FLOAT_CARRY [.float: a float run packed by an earlier session's 'train', unpacked when WORK has none]
#   ablate only: VARIANTS [all of benchmarks/ablation.py's]  ABLATION_EPOCHS [sized from the probe]
#   COMPILE [off; on: torch.compile each variant, which pays one compilation per variant]
#   train only: MODEL_ARGS [none: overrides of the config for 'saformer train', e.g. "--depth 2 --dim 64";
#     needs EPOCHS, since the throughput probe measures the named config]
# DATASET=digits runs the same steps on the CPU in a few minutes: the dry run that checks them.
# DATASET=cifar10 MODEL_ARGS="--depth 2 --dim 64" EPOCHS=4 BATCH=64 on the CPU is the rehearsal on the
# real images (docs/gpu.md, "Rehearsed on the CPU").
set -euo pipefail

stage=${1:-}
minutes=${2:-}
case "$stage" in train|quant|ablate) ;; *) echo "usage: gpu_cifar.sh train|quant|ablate MINUTES" >&2; exit 2 ;; esac
[[ "$minutes" =~ ^[0-9]+$ ]] || { echo "gpu_cifar.sh: MINUTES must be a whole number, got '$minutes'" >&2; exit 2; }
DATASET=${DATASET:-cifar10}
CONFIG=${CONFIG:-$([ "$DATASET" = digits ] && echo saformer-2-64 || echo saformer-4-384)}
BATCH=${BATCH:-256}
LR=${LR:-2e-3}
WARMUP=${WARMUP:-2}
QAT_EPOCHS=${QAT_EPOCHS:-2}
SAMPLE=${SAMPLE:-64}
ARCHIVES=${ARCHIVES:-.c10}
WHEELS=${WHEELS:-.whl}
FLOAT_CARRY=${FLOAT_CARRY:-.float}
WORK=${WORK:-build/gpu}
OUT=${OUT:-$WORK/out}
PY=${PY:-python3}
RES=$WORK/results
mkdir -p "$WORK" "$OUT" "$RES"
export PYTHONUNBUFFERED=1
export SAFORMER_CACHE_DIR=${SAFORMER_CACHE_DIR:-$WORK/cache}  # decoded images, kept with the runs

# ---- set-up: wheels (the device image has torch but no brevitas) and the data -------------------
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
saformer() { "$PY" -m saformer.cli "$@"; }

data_args=()
if [ "$DATASET" != digits ]; then
    data=$WORK/data
    if [ ! -d "$data/test" ]; then
        compgen -G "$ARCHIVES/*.tar.gz" >/dev/null || { echo "gpu_cifar.sh: no archives in '$ARCHIVES'" >&2; exit 2; }
        mkdir -p "$data"
        for a in "$ARCHIVES"/*.tar.gz; do tar xzf "$a" -C "$data"; done
    fi
    data_args=(--data-dir "$data")
fi

device=$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
"$PY" -c 'import torch, platform; print("python", platform.python_version(), "torch", torch.__version__,
"gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)' | tee "$RES/environment.txt"
git log -1 --format='commit %H' 2>/dev/null | tee -a "$RES/environment.txt" || true
compile=()
[ "$device" = cuda ] && compile=(--compile)

finished() {  # a run directory whose metrics.json says it ran all its epochs
    "$PY" -c 'import json, sys, pathlib
m = pathlib.Path(sys.argv[1]) / "metrics.json"
sys.exit(0 if m.exists() and json.loads(m.read_text()).get("complete", False) else 1)' "$1"
}

ship() {  # the device tool brings back 8 files at most: everything in one archive, remade after each step
    tar czf "$OUT/gpu_$stage.tar.gz" -C "$WORK" results
}
trap ship EXIT  # a failed step's log comes back too

run_stage() {  # NAME DIR SUBCOMMAND KEEP... -- FRESH...: a new run with KEEP and FRESH, or --resume with KEEP
    local name=$1 dir=$2 sub=$3
    shift 3
    local keep=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do keep+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    if finished "$dir"; then echo "$name: done already ($dir)"; return; fi
    echo "== $name $(date -u +%T)" | tee -a "$RES/$name.log"
    if [ -f "$dir/run.json" ]; then
        saformer "$sub" --out "$dir" --resume "${keep[@]}" 2>&1 | tee -a "$RES/$name.log"
    else
        saformer "$sub" "$@" --out "$dir" "${keep[@]}" 2>&1 | tee -a "$RES/$name.log"
    fi
    ship
}

probe() {  # uncompiled training speed at this batch (a lower bound on the compiled run's), once
    [ -f "$RES/throughput_probe.json" ] && return
    "$PY" benchmarks/throughput.py --config "$CONFIG" --device "$device" --batch-size "$BATCH" \
        --steps 10 --repeats 3 --out "$RES/throughput_probe.json" 2>&1 | tee "$RES/probe.log"
}

epochs_for() {  # MINUTES RUNS: epochs each of RUNS runs can train so that all end inside MINUTES
    "$PY" -c 'import json, sys
rate = json.load(open(sys.argv[1]))["train_images_per_s_median"]
minutes, runs, dataset = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
from saformer.data import load_dataset
n = {"cifar10": 50_000, "cifar100": 50_000}.get(dataset) or len(load_dataset(dataset).train)  # no JPEG decoding
# a minute for start-up and compilation, a tenth for the per-epoch test pass and checkpoint
print(max(1, int((minutes - 1) * 60 * 0.9 * rate / n / runs)))' "$RES/throughput_probe.json" "$1" "$2" "$DATASET"
}

read -r -a model_args <<< "${MODEL_ARGS:-}"
if [ "$stage" = train ] && [ "${#model_args[@]}" -gt 0 ] && [ -z "${EPOCHS:-}" ]; then
    echo "gpu_cifar.sh: MODEL_ARGS needs EPOCHS (the throughput probe measures '$CONFIG', not the overridden model)" >&2
    exit 2
fi

float=$WORK/float
if [ "$stage" = train ]; then
    if [ ! -f "$float/run.json" ] && [ -z "${EPOCHS:-}" ]; then
        probe
        EPOCHS=$(epochs_for "$minutes" 1)
        echo "float training: $EPOCHS epochs at batch $BATCH, sized to $minutes min" | tee -a "$RES/float.log"
    fi
    run_stage float "$float" train "${data_args[@]}" --max-minutes "$minutes" --no-progress "${compile[@]}" -- \
        --dataset "$DATASET" --config "$CONFIG" --epochs "${EPOCHS:-1}" --batch-size "$BATCH" --lr "$LR" \
        --warmup-epochs "$WARMUP" "${model_args[@]}"
    cp "$float/metrics.json" "$RES/float_metrics.json"
    cp "$float/timing.json" "$RES/float_timing.json" 2>/dev/null || true
    ship
    # the weights come back, in parts, so that a later session can run 'quant' on them (docs/gpu.md)
    "$PY" tools/gpu_carry.py pack "$float" "$OUT" | tee -a "$RES/float.log"
elif [ "$stage" = ablate ]; then
    # Every variant gets the same epochs, batch, learning rate and seed; benchmarks/ablation.py
    # skips finished variants and resumes a cut-off one, so a call stopped at its limit is rerun.
    abl=(benchmarks/ablation.py --dataset "$DATASET" --config "$CONFIG" ${VARIANTS:+--variants "$VARIANTS"})
    runs=$("$PY" -c 'import sys; sys.path.insert(0, "benchmarks"); import ablation
a = ablation.parse_args(sys.argv[1:])
print(len({r["run"] for r in ablation.plan(a) if not r["skipped"]}))' "${abl[@]:1}")
    if [ -z "${ABLATION_EPOCHS:-}" ]; then
        if [ -f "$RES/ablation_epochs" ]; then
            ABLATION_EPOCHS=$(cat "$RES/ablation_epochs")  # a rerun keeps the budget the first call chose
        else
            probe
            # SSA costs more per step than SASA at N = 64: a fifth of the time is kept in hand
            ABLATION_EPOCHS=$(( $(epochs_for "$minutes" "$runs") * 4 / 5 ))
            [ "$ABLATION_EPOCHS" -ge 1 ] || ABLATION_EPOCHS=1
        fi
    fi
    echo "$ABLATION_EPOCHS" > "$RES/ablation_epochs"
    echo "ablation: $runs runs, $ABLATION_EPOCHS epochs each at batch $BATCH, sized to $minutes min" | tee -a "$RES/ablation.log"
    "$PY" "${abl[@]}" "${data_args[@]}" --epochs "$ABLATION_EPOCHS" --batch-size "$BATCH" --lr "$LR" \
        --warmup-epochs 1 --runs "$WORK/ablation" --out "$RES/ablation_$DATASET" --no-progress \
        $([ "${COMPILE:-off}" = on ] && echo --compile) 2>&1 | tee -a "$RES/ablation.log"
    ship
else
    if ! finished "$float" && [ -f "$FLOAT_CARRY/float.json" ]; then  # trained in an earlier session
        rm -rf "$float"
        "$PY" tools/gpu_carry.py unpack "$FLOAT_CARRY" "$float" | tee -a "$RES/float.log"
        cp "$float/metrics.json" "$RES/float_metrics.json"
        cp "$float/timing.json" "$RES/float_timing.json" 2>/dev/null || true
    fi
    finished "$float" || { echo "gpu_cifar.sh: the float run in '$float' is not finished; run 'train' first" >&2; exit 2; }
    # QAT and the export at both widths first, and the exports into OUT at once: they are what a
    # later session or the CPU needs to score the integer model, should this call be cut off
    for bits in 8 4; do
        q=$WORK/qat$bits
        e=$WORK/export$bits
        # QAT fine-tunes without bf16 (it would take values off the fixed-point grid) and uncompiled
        run_stage "qat$bits" "$q" quantize "${data_args[@]}" --max-minutes "$(( (minutes + 2) / 3 ))" --no-progress -- \
            "$float" --weight-bits "$bits" --epochs "$QAT_EPOCHS" --batch-size "$BATCH"
        cp "$q/metrics.json" "$RES/qat${bits}_metrics.json"
        if [ ! -f "$e/manifest.json" ]; then
            saformer export "$q" --out "$e" --no-qonnx "${data_args[@]}" 2>&1 | tee -a "$RES/export$bits.log"
        fi
        # both exports come back whole, one archive each (4 and 8 MB at saformer-4-384): the
        # accelerator's CIFAR runs take them (benchmarks/accel_cifar.py --export-8 --export-4)
        tar czf "$OUT/export$bits.tar.gz" -C "$WORK" "export$bits"
        ship
    done
    for bits in 8 4; do
        e=$WORK/export$bits
        # the integer model on the test set on the GPU, the numpy definition beside it on a sample
        # (skipped when done: a rerun after a cut-off call goes on where it stopped)
        if [ ! -f "$RES/golden$bits/golden.json" ]; then
            saformer golden "$e" "${data_args[@]}" --backend torch --device "$device" --crosscheck "$SAMPLE" \
                ${GOLDEN_LIMIT:+--limit "$GOLDEN_LIMIT"} $([ "${PROBES:-on}" = off ] && echo --no-attention-probes) \
                --out "$RES/golden$bits" --no-progress 2>&1 | tee -a "$RES/golden$bits.log"
        fi
        ship
    done
fi
ls -la "$OUT"
