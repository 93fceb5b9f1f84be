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

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv" >&2
    "$(pick_python)" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
  fi
}

# ensure_installed EXTRAS: install the package (editable) with EXTRAS ("" or "[dev]") when missing or stale.
ensure_installed() {
  local extras="$1" name
  name="$(printf '%s' "$extras" | tr -cd 'a-z,' | tr ',' '-')"
  local stamp=".venv/.installed${name:+-$name}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing devpynode${extras} into .venv" >&2
    .venv/bin/python -m pip install --quiet --quiet --disable-pip-version-check -e ".${extras}"
    touch "$stamp"
  fi
}

# ensure_web_deps: the web app's npm packages (web/node_modules), installed when missing or stale.
ensure_web_deps() {
  if [ ! -x web/node_modules/.bin/vite ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    echo "==> installing the web app's packages (npm ci in web/)" >&2
    (cd web && npm ci --silent --no-audit --no-fund)
  fi
}

# web_build_stale: true when web/dist is missing or older than the app's sources.
web_build_stale() {
  [ ! -f web/dist/index.html ] ||
    [ -n "$(find web/src web/public web/index.html web/package-lock.json web/vite.config.ts -newer web/dist/index.html -print -quit)" ]
}
