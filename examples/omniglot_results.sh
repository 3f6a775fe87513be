#!/usr/bin/env bash
# The runs behind docs/RESULTS.md's Omniglot table: train each learner on this machine's budget,
# then test it on 600 episodes of 5-way 1-shot, 5-way 5-shot, 20-way 1-shot and 20-way 5-shot
# (15 queries per class for 5-way, 5 for 20-way), appending one JSON line per row to
# outputs/results/omniglot.jsonl; then `python examples/results_table.py` renders the table and
# the learning curves. Usage: examples/omniglot_results.sh [run ...]  (default: all runs).
# One thread each (run two of these side by side on 2 cores: 1 BLAS + 1 numba thread each).
set -euo pipefail
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
RUNS="protonet protonet1 matching relation relation5 maml maml5 fomaml fomaml5 metasgd metasgd5
    anil anil5 reptile reptile5 maml20 fomaml20 anil20 metasgd20 reptile20"
for name in "$@"; do  # every name checked before anything is made or trained
    case " $(echo $RUNS) " in
    *" $name "*) ;;
    *) echo "usage: examples/omniglot_results.sh [run ...]; runs: $(echo $RUNS)" >&2
       [[ $name == -h || $name == --help ]] && exit 0
       echo "omniglot_results.sh: unknown run $name" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-outputs/results}
REPORT=$OUT/omniglot.jsonl
mkdir -p "$OUT"

train() {  # name, then the arguments of minimeta train (a run begun before is resumed)
    local name=$1 resume=""; shift
    [[ -f "$OUT/$name/checkpoint.npz" ]] && resume=--resume
    # tee -i: Ctrl-C stops minimeta, which then says where its checkpoint is; tee must stay
    minimeta train --out "$OUT/$name" $resume "$@" 2>&1 | tee -i "$OUT/$name.train.log"
}

evaluate() {  # name, then the rows: ways:shots pairs
    local name=$1; shift
    for row in "$@"; do
        local ways=${row%:*} shots=${row#*:} queries=15
        [ "$ways" -ge 20 ] && queries=5
        minimeta eval --checkpoint "$OUT/$name/checkpoint.npz" --episodes 600 --ways "$ways" \
            --shots "$shots" --queries "$queries" --report "$REPORT" 2>&1 | tail -n 1
    done
}

ALL_ROWS="5:1 5:5 20:1 20:5"
[ $# -eq 0 ] && set -- $RUNS
for learner in "$@"; do
    case $learner in
    protonet)  # the paper's 60-way 5-shot episodes; lr halved every 500 (paper: 2000)
        train protonet --learner protonet --shots 5 --iterations 1200 --lr-halve-every 500
        evaluate protonet $ALL_ROWS ;;
    matching)  # cosine attention, no FCE, trained 20-way 1-shot
        train matching --learner matching --ways 20 --shots 1 --iterations 3000
        evaluate matching $ALL_ROWS ;;
    protonet1)  # the paper's 1-shot model: 60-way 1-shot episodes
        train protonet1 --learner protonet --shots 1 --iterations 1200 --lr-halve-every 500
        evaluate protonet1 5:1 20:1 ;;
    relation)  # trained 5-way 1-shot with 19 queries per class (the paper's)
        train relation --learner relation --ways 5 --shots 1 --iterations 3000
        evaluate relation $ALL_ROWS ;;
    relation5)  # the paper's 5-shot model (class features sum the shots): 15 queries per class
        train relation5 --learner relation --ways 5 --shots 5 --queries 15 --iterations 1500
        evaluate relation5 5:5 20:5 ;;
    maml)  # second-order MAML, 5-way 1-shot, 8 tasks per meta-batch (paper: 32)
        train maml --learner maml --ways 5 --shots 1 --meta-batch 8 --iterations 800
        evaluate maml 5:1 ;;
    maml5|fomaml5|metasgd5|anil5)  # 5-way 5-shot, 8 tasks per meta-batch, 300 iterations
        train "$learner" --learner "${learner%5}" --ways 5 --shots 5 --meta-batch 8 \
            --iterations 300
        evaluate "$learner" 5:5 ;;
    maml20|fomaml20|anil20|metasgd20)  # 20-way 1-shot (the paper's 5 inner steps of α = 0.1),
        # 8 tasks per meta-batch (paper: 16), 5 queries per class (paper: 15), ~15 minutes each
        declare -A ITERS20=([maml20]=110 [fomaml20]=250 [anil20]=250 [metasgd20]=110)
        train "$learner" --learner "${learner%20}" --ways 20 --shots 1 --meta-batch 8 \
            --queries 5 --validate-every 100 --iterations "${ITERS20[$learner]}"
        evaluate "$learner" 20:1 20:5 ;;
    fomaml|metasgd|anil)  # the same setting and budget in time as MAML's (about 12 minutes)
        declare -A ITERS=([fomaml]=700 [metasgd]=400 [anil]=600)
        train "$learner" --learner "$learner" --ways 5 --shots 1 --meta-batch 8 \
            --iterations "${ITERS[$learner]}"
        evaluate "$learner" 5:1 ;;
    reptile)  # Nichol et al.: 5 inner Adam steps, 5 tasks per meta-batch, 50 test steps
        train reptile --learner reptile --ways 5 --shots 1 --iterations 2000
        evaluate reptile 5:1 ;;
    reptile5)  # the same, 5-way 5-shot
        train reptile5 --learner reptile --ways 5 --shots 5 --iterations 400
        evaluate reptile5 5:5 ;;
    reptile20)  # the same, 20-way 1-shot, 5 queries per class
        train reptile20 --learner reptile --ways 20 --shots 1 --queries 5 --iterations 250
        evaluate reptile20 20:1 20:5 ;;
    *) echo "unknown learner $learner" >&2; exit 2 ;;
    esac
done
