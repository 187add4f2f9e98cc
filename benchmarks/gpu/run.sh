#!/usr/bin/env bash
# GPU verification kit, the part that runs on the GPU machine (no network there).
#
#   bash benchmarks/gpu/run.sh OUT             # GPU: install prepare.sh's wheels, then every step (<= 8 min)
#   bash benchmarks/gpu/run.sh --dry-run OUT   # CPU: the same steps at tiny sizes (< 2 min; part of make test)
#
# Results: OUT/results.json, OUT/results.md and OUT/kit-logs.tar.gz (each step's record and log,
# the fits' logs, metrics and configs): three files, as the GPU machine returns at most 8 from $OUT.
# The steps work in KIT_WORK (default a fresh /tmp/argsfw-kit.XXXXXX).
# Each step runs as its own process under a time budget; a step that fails or runs out of time is
# recorded as such and the next one still runs.
# Environment: KIT_PYTHON (default python3), KIT_WHEELS (default benchmarks/gpu/.wheels),
# KIT_SITE (where the wheels are installed, default /tmp/argsfw-kit-site), KIT_INSTALL=0 to use
# the Python environment as it is (the dry run in make test uses the project's venv this way),
# KIT_DATA (the hh-rlhf folder; default prepare.sh's copy, else ../shared/data), KIT_TOTAL (seconds
# for all steps: 480 on the GPU, 120 in the dry run).
set -u
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
if [[ $# -ne 1 || "$1" == -* ]]; then
  echo "usage: bash benchmarks/gpu/run.sh [--dry-run] OUT" >&2
  exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
mkdir -p "$1" && OUT=$(cd "$1" && pwd)
WORK=${KIT_WORK:-$(mktemp -d /tmp/argsfw-kit.XXXXXX)}
mkdir -p "$WORK/steps" "$WORK/logs"
PY=${KIT_PYTHON:-python3}
WHEELS=${KIT_WHEELS:-$HERE/.wheels}
SITE=${KIT_SITE:-/tmp/argsfw-kit-site}
START=$SECONDS
date +%s >"$WORK/steps/started"

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
export WANDB_MODE=disabled PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ $DRY == 1 ]]; then
  BASE=120 MODE=--dry-run
  export DS_ACCELERATOR=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  BASE=480 MODE=
  export DS_ACCELERATOR=cuda
fi

TOTAL=${KIT_TOTAL:-$BASE} # the step budgets below are for BASE seconds, scaled to TOTAL

# ------------------------------------------------------------------ install (GPU machine)
if [[ "${KIT_INSTALL:-$((1 - DRY))}" == 1 ]]; then
  t0=$SECONDS
  rm -rf "$SITE" && mkdir -p "$SITE"
  shopt -s nullglob
  whls=("$WHEELS"/*.whl)
  sdists=("$WHEELS"/*.tar.gz)
  status=ok note=""
  if [[ ${#whls[@]} -eq 0 ]]; then
    status=failed note="no wheels in $WHEELS: run benchmarks/gpu/prepare.sh on a machine with the registries"
    echo "$note" >"$WORK/logs/install.log"
  elif ! "$PY" -m pip --version >/dev/null 2>&1; then
    # no pip: a wheel is a zip archive of the files in their installed layout; unpacking one into
    # the target folder is what `pip install --target` does for these (no scripts, no data dirs)
    note="no pip here: wheels unpacked with zipfile"
    "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
      "$SITE" "${whls[@]}" >"$WORK/logs/install.log" 2>&1 || status=failed
  elif ! timeout 150 "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "${whls[@]}" \
    >"$WORK/logs/install.log" 2>&1; then
    status=failed note="pip install from the wheels failed (see logs/install.log)"
  fi
  for sd in "${sdists[@]}"; do # a package prepare.sh could not build into a wheel (DeepSpeed)
    if ! DS_BUILD_OPS=0 "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" "$sd" \
      >>"$WORK/logs/install.log" 2>&1; then
      note="$note; $(basename "$sd") did not build here (see logs/install.log)"
    fi
  done
  export PYTHONPATH="$SITE:$REPO"
  printf '{"status": "%s", "seconds": %d, "wheels": %d, "sdists": %d, "site": "%s", "note": "%s"}\n' \
    "$status" $((SECONDS - t0)) ${#whls[@]} ${#sdists[@]} "$SITE" "${note#; }" >"$WORK/steps/install.json"
else
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
  printf '{"status": "skipped", "reason": "KIT_INSTALL=0: the Python environment as it is"}\n' >"$WORK/steps/install.json"
fi

# publish: the report so far into OUT, so a run cut off from outside still returns what it measured
publish() {
  "$PY" "$HERE/kit.py" report "$WORK" $MODE >/dev/null 2>&1
  cp "$WORK/results.json" "$WORK/results.md" "$OUT/" 2>/dev/null
  (cd "$WORK" && find steps logs runs -type f ! -path '*/hf/*' -print0 2>/dev/null |
    tar czf "$OUT/kit-logs.tar.gz" --null -T -)
}

# ------------------------------------------------------------------ steps, each under its budget
# step NAMES BUDGET: kit.py NAMES (one step, or several joined by commas in one process) under
# min(BUDGET scaled to TOTAL, what is left of TOTAL less 5 s for the report)
step() {
  local names=$1 budget=$(($2 * TOTAL / BASE)) left rc n
  local log=${names//,/+}
  left=$((TOTAL - (SECONDS - START) - 5))
  ((budget > left)) && budget=$left
  if ((budget < 5)); then
    for n in ${names//,/ }; do
      printf '{"status": "skipped", "reason": "out of time (total budget %d s)"}\n' "$TOTAL" >"$WORK/steps/$n.json"
    done
    return
  fi
  echo "== $names (budget ${budget}s, $((SECONDS - START))s elapsed)"
  timeout -k 5 "$budget" "$PY" "$HERE/kit.py" "$names" "$WORK" $MODE --budget "$budget" ${KIT_DATA:+--data "$KIT_DATA"} \
    >"$WORK/logs/$log.log" 2>&1
  rc=$?
  for n in ${names//,/ }; do
    echo $rc >"$WORK/steps/$n.rc"
    echo "$log.log" >"$WORK/steps/$n.log_name"
  done
  grep '^kit ' "$WORK/logs/$log.log"
  publish
}

if [[ $DRY == 1 ]]; then
  # one process for the three decoding steps: on a small CPU each torch import costs seconds
  step env,identity,speed 60; step fit_sft 40; step fit_rm 40; step fit_zero2 25
else
  step env 25; step identity 45; step speed 210; step fit_sft 50; step fit_rm 50; step fit_zero2 70
fi
"$PY" "$HERE/kit.py" report "$WORK" $MODE
rc=$?
publish
echo "kit: $((SECONDS - START)) s in all; results in $OUT/results.json, $OUT/results.md, $OUT/kit-logs.tar.gz"
exit $rc
