#!/usr/bin/env bash
# GPU verification kit, the part that runs BEFORE the GPU machine: on a CPU machine that reaches the
# package registries. Fills two ignored folders that travel to the GPU machine (carry):
#   benchmarks/gpu/.wheels   the wheels the GPU machine lacks, for CPython 3.12 x86-64, at the
#                            versions pinned in constraints.txt
#   benchmarks/gpu/.data     the real HH-RLHF test files the speed step takes its prompts from
# and checks that the two together stay within the 64 MiB a device call may carry.
#
#   bash benchmarks/gpu/prepare.sh
#
# The GPU machine already has torch 2.11 with CUDA (argsfw's range is torch>=2.4,<2.15; torch is
# never shipped: its CUDA wheels are GBs), numpy, and older transformers/lightning/peft/accelerate.
# It lacks hydra-core, omegaconf, deepspeed and the rest, and its transformers (5.17) predates the
# `cache` argument of transformers 5.24 that argsfw's decoding engine uses, so transformers,
# tokenizers and huggingface_hub travel at argsfw's pins. Packages that only the evaluation needs
# (datasets/pyarrow, wandb, nltk, matplotlib, sentence-transformers) are left out: no step of
# the kit imports them.
# Environment: PYTHON (a Python with pip, torch and setuptools, to build the two sdist-only
# packages; default .venv/bin/python, else python3), KIT_WHEELS (default benchmarks/gpu/.wheels),
# KIT_PY_VERSION (default 3.12), SHARED_DATA (default ../shared/data beside the checkout).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
WHEELS=${KIT_WHEELS:-$HERE/.wheels}
DATA_OUT=$HERE/.data
PYVER=${KIT_PY_VERSION:-3.12}
SHARED=${SHARED_DATA:-$REPO/../shared/data}
LIMIT=$((64 * 1024 * 1024))

# What the kit's steps import, beyond what the GPU machine has (torch, numpy), with the
# dependencies those need; pip's --no-deps below, so this list is the whole set.
PACKAGES=(
  # transformers 5.24 and what it imports
  transformers tokenizers huggingface_hub hf-xet httpx2 httpcore2 h11 anyio idna truststore
  click typer shellingham rich markdown-it-py mdurl Pygments annotated-doc
  regex safetensors PyYAML tqdm filelock fsspec packaging typing_extensions
  # Lightning, Hydra, peft
  lightning lightning-utilities torchmetrics hydra-core omegaconf peft accelerate psutil
  # DeepSpeed's imports (DeepSpeed itself is built below)
  hjson ninja py-cpuinfo msgpack pydantic pydantic_core annotated-types typing-inspection einops
)
SDISTS=(antlr4-python3-runtime deepspeed) # no wheel on the registry: built here, pure Python

pin() { # NAME -> NAME==VERSION from constraints.txt (names compared case- and -/_-insensitively)
  local want
  want=$(echo "$1" | tr 'A-Z_' 'a-z-')
  awk -F'==' -v w="$want" '!/^#/ && NF == 2 { n = tolower($1); gsub("_", "-", n); if (n == w) print $1 "==" $2 }' \
    "$REPO/constraints.txt"
}
pins=()
for p in "${PACKAGES[@]}" "${SDISTS[@]}"; do
  v=$(pin "$p")
  [[ -n "$v" ]] || { echo "prepare: $p has no pin in constraints.txt" >&2; exit 2; }
  pins+=("$v")
done
n_bin=${#PACKAGES[@]}

rm -rf "$WHEELS" && mkdir -p "$WHEELS"
echo "prepare: downloading ${n_bin} wheels for CPython $PYVER x86-64 into $WHEELS"
"$PY" -m pip download -q --no-deps --only-binary=:all: --dest "$WHEELS" \
  --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  "${pins[@]:0:n_bin}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# DeepSpeed and antlr4 (Hydra's parser runtime) publish only source archives. Both are pure
# Python once built without DeepSpeed's C++/CUDA ops (DS_BUILD_OPS=0: ops are JIT-compiled on
# first use, and the kit's ZeRO-2 fit with a torch optimizer needs none), so they are built into
# py3-none-any wheels here, where pip can fetch build tools, not on the offline GPU machine.
# DeepSpeed's setup.py imports torch, hence --no-build-isolation with a Python that has torch.
for v in "${pins[@]:n_bin}"; do
  echo "prepare: building $v (source only on the registry)"
  if ! DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation --wheel-dir "$WHEELS" "$v" \
    >"$WHEELS/build-${v%%==*}.log" 2>&1; then
    echo "prepare: could not build $v here (see $WHEELS/build-${v%%==*}.log); shipping its source" >&2
    "$PY" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation --dest "$WHEELS" "$v"
  fi
done
rm -f "$WHEELS"/build-*.log

missing=()
have=$(ls "$WHEELS" | tr 'A-Z-' 'a-z_') # file names with names and versions normalised alike
for v in "${pins[@]}"; do
  n=$(echo "${v%%==*}" | tr 'A-Z-' 'a-z_')
  grep -q "^${n}_${v##*==}[_.]" <<<"$have" || missing+=("$v")
done
[[ ${#missing[@]} -eq 0 ]] || { echo "prepare: missing after download: ${missing[*]}" >&2; exit 1; }

# The real HH-RLHF prompts: the two test files benchmarks/decode.py reads (../shared does not travel).
files=(hh-rlhf/helpful-base/test-part-a.jsonl.gz hh-rlhf/harmless-base/test.jsonl.gz hh-rlhf/LICENSE)
rm -rf "$DATA_OUT"
for f in "${files[@]}"; do
  [[ -f "$SHARED/$f" ]] || { echo "prepare: $SHARED/$f not found (set SHARED_DATA)" >&2; exit 2; }
  mkdir -p "$DATA_OUT/$(dirname "$f")" && cp "$SHARED/$f" "$DATA_OUT/$f"
done

# The limit covers the whole working tree that travels: tracked and untracked-not-ignored files too.
carried=$(du -cb "$WHEELS" "$DATA_OUT" | tail -n 1 | cut -f1)
tree=$(cd "$REPO" && git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -n 1 | cut -f1)
total=$((carried + tree))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "prepare: $(ls "$WHEELS" | wc -l) files in .wheels, $(find "$DATA_OUT" -type f | wc -l) in .data:" \
  "$(mib "$carried"), with the working tree $(mib "$total") of the 64 MiB a device call takes"
if ((total > LIMIT)); then
  echo "prepare: over the 64 MiB limit; drop a package from PACKAGES" >&2
  exit 1
fi
echo "prepare: done. Next, on the GPU machine (carry benchmarks/gpu/.wheels and benchmarks/gpu/.data):"
echo "  bash benchmarks/gpu/run.sh \"\$OUT\""
