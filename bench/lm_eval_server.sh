#!/usr/bin/env bash
# lm-evaluation-harness (EleutherAI lm-eval, `local-completions` model) against `hillclimb serve`.
#
# Runs the two small tasks in bench/lm_eval/ (20 held-out arithmetic items written by
# bench/lm_eval/make_data.py from hillclimb's own generators; no hub at run time):
#   hc_arith_mc   multiple choice: loglikelihood requests = /v1/completions with echo + logprobs
#   hc_arith_gen  generate_until:  plain /v1/completions, exact match on "The answer is N"
#
#   bash bench/lm_eval_server.sh --thinking CKPT [--flash CKPT]     # starts a server, stops it after
#   bash bench/lm_eval_server.sh --url http://127.0.0.1:8000 --tokenizer CKPT   # a running server
#
# Options: --model NAME (served model, default thinking), --tasks LIST (default
# hc_arith_mc,hc_arith_gen), --port P (default 8011), --out DIR (default /tmp/hc-lmeval),
# --api-key KEY (sent as OPENAI_API_KEY; not needed in open mode), --limit N, --num-concurrent N.
# lm-eval lives in its own venv, never in the project's: $LMEVAL_VENV (default /tmp/lmeval-venv),
# created on first use with the project's torch version pinned (so pip keeps the CPU build).
# The server runs from the project's venv ($HC_VENV, default ./.venv); PYTHONPATH passes through.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
LMEVAL_VENV=${LMEVAL_VENV:-/tmp/lmeval-venv}
LMEVAL_VERSION=${LMEVAL_VERSION:-0.4.13}
HC_VENV=${HC_VENV:-$ROOT/.venv}
THINKING="" FLASH="" URL="" TOKENIZER="" MODEL=thinking PORT=8011 OUT=/tmp/hc-lmeval
TASKS=hc_arith_mc,hc_arith_gen LIMIT="" CONC=1 API_KEY=""

while [ $# -gt 0 ]; do
  case "$1" in
    --thinking) THINKING=$2; shift 2 ;;
    --flash) FLASH=$2; shift 2 ;;
    --url) URL=${2%/}; shift 2 ;;
    --tokenizer) TOKENIZER=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --tasks) TASKS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --num-concurrent) CONC=$2; shift 2 ;;
    --api-key) API_KEY=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ -z "$URL" ] && [ -z "$THINKING$FLASH" ]; then
  echo "give --thinking/--flash checkpoints (a server is started) or --url of a running one" >&2
  exit 2
fi
# the tokenizer lm-eval counts context tokens with: the served model's checkpoint
if [ -z "$TOKENIZER" ]; then
  case "$MODEL" in
    code-flash) TOKENIZER=$FLASH ;;
    *) TOKENIZER=${THINKING:-$FLASH} ;;
  esac
fi
[ -n "$TOKENIZER" ] || { echo "--tokenizer CKPT is needed with --url" >&2; exit 2; }

if [ ! -x "$LMEVAL_VENV/bin/lm_eval" ]; then
  echo "installing lm-eval $LMEVAL_VERSION into $LMEVAL_VENV"
  TORCH=$("$HC_VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
  python3 -m venv "$LMEVAL_VENV"
  "$LMEVAL_VENV/bin/pip" install -q "torch==$TORCH"
  "$LMEVAL_VENV/bin/pip" install -q "lm-eval[api]==$LMEVAL_VERSION" transformers "torch==$TORCH"
fi

mkdir -p "$OUT"
SERVER_PID=""
cleanup() { if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

if [ -z "$URL" ]; then
  URL=http://127.0.0.1:$PORT
  args=(serve --port "$PORT" --state-dir "$OUT/state")
  [ -n "$THINKING" ] && args+=(--thinking "$THINKING")
  [ -n "$FLASH" ] && args+=(--flash "$FLASH")
  echo "starting: hillclimb ${args[*]}  (log: $OUT/server.log)"
  "$HC_VENV/bin/hillclimb" "${args[@]}" >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    curl -sf "$URL/health" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited:"; tail -20 "$OUT/server.log"; exit 1; }
    sleep 1
  done
  curl -sf "$URL/health" >/dev/null || { echo "server not healthy after 300 s" >&2; exit 1; }
fi
URL=${URL%/v1}

# Loglikelihood tasks need prompt logprobs (echo + logprobs); a server without them answers 400
# unsupported_parameter (param echo): say so and run the rest instead of failing the whole run.
AUTH=()
[ -n "$API_KEY" ] && AUTH=(-H "Authorization: Bearer $API_KEY")
probe=$(curl -s -o "$OUT/echo_probe.json" -w '%{http_code}' "${AUTH[@]}" \
  -H 'Content-Type: application/json' "$URL/v1/completions" \
  -d "{\"model\": \"$MODEL\", \"prompt\": [[1, 2, 3]], \"max_tokens\": 1, \"logprobs\": 1, \"echo\": true}")
if [ "$probe" != 200 ]; then
  echo "WARNING: $URL refuses echo + logprobs (HTTP $probe: $(cat "$OUT/echo_probe.json"))"
  echo "WARNING: skipping the loglikelihood task hc_arith_mc (docs/areas/eval.md, lm-evaluation-harness)"
  TASKS=$(echo "$TASKS" | tr ',' '\n' | grep -vx hc_arith_mc | paste -sd, -)
  [ -n "$TASKS" ] || { echo "no task left to run" >&2; exit 1; }
fi

# Everything local: the tokenizer is a checkpoint directory, the data a JSONL in bench/lm_eval/.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
[ -n "$API_KEY" ] && export OPENAI_API_KEY=$API_KEY
MODEL_ARGS="model=$MODEL,base_url=$URL/v1/completions,tokenizer=$TOKENIZER"
MODEL_ARGS+=",tokenizer_backend=huggingface,max_length=1024,num_concurrent=$CONC,max_retries=1"
cmd=("$LMEVAL_VENV/bin/lm_eval" --model local-completions --model_args "$MODEL_ARGS"
     --include_path bench/lm_eval --tasks "$TASKS" --output_path "$OUT/results" --log_samples)
[ -n "$LIMIT" ] && cmd+=(--limit "$LIMIT")
echo "running: ${cmd[*]}"
"${cmd[@]}"
