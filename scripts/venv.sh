# shellcheck shell=bash
# Sourced by scripts/start and scripts/test, not run: set up .venv and install
# monGARS into it, with a progress line per phase, and skip pip when nothing
# changed since the last install.
#
# .venv/.mongars-installed keeps one line per install that succeeded: the
# sha256 of pyproject.toml and of the pip command. pip runs again when
# pyproject.toml changes or other extras are asked for; delete the file to
# force it. pip's whole output goes to .venv/pip-install.log.

MONGARS_STAMP=.venv/.mongars-installed
MONGARS_PIP_LOG=.venv/pip-install.log
MONGARS_SCRIPT=${MONGARS_SCRIPT:-$(basename "$0")}
MONGARS_STARTED=$SECONDS

# say MESSAGE: one progress line on stderr, with the seconds since the script began.
say() {
  printf '[%s %3ds] %s\n' "$MONGARS_SCRIPT" "$((SECONDS - MONGARS_STARTED))" "$*" >&2
}

# mongars_python: the Python that creates .venv (3.11 preferred), or exit 1 saying why.
mongars_python() {
  local python
  python=$(command -v python3.11 || command -v python3 || true)
  if [ -z "$python" ]; then
    echo "error: monGARS needs Python 3.11 or newer, and there is no python3 on PATH" >&2
    exit 1
  fi
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: monGARS needs Python 3.11 or newer; $python is $("$python" -V 2>&1)" >&2
    exit 1
  fi
  printf '%s\n' "$python"
}

# mongars_install_key SPEC: what the stamp records for an install of SPEC.
mongars_install_key() {
  "$MONGARS_PY" - "$1" <<'EOF'
import hashlib, pathlib, sys
digest = hashlib.sha256(pathlib.Path("pyproject.toml").read_bytes())
digest.update(b"\0pip install -e " + sys.argv[1].encode())
print(digest.hexdigest(), sys.argv[1])
EOF
}

# mongars_is_installed SPEC...: true when .venv holds an up-to-date install of one of them.
mongars_is_installed() {
  local spec
  [ -x .venv/bin/python ] && [ -f "$MONGARS_STAMP" ] || return 1
  for spec in "$@"; do
    grep -qxF "$(mongars_install_key "$spec")" "$MONGARS_STAMP" && return 0
  done
  return 1
}

# mongars_pip_progress: pip's output in, a line per step and package out (one rewritten
# line on a terminal); all of it into the log.
mongars_pip_progress() {
  local line shown tty=
  [ -t 2 ] && tty=1
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$MONGARS_PIP_LOG"
    shown=
    case $line in
      Obtaining* | Collecting* | Processing* | ERROR* | error:*) shown=$line ;;
      *Downloading*) shown="  ${line#"${line%%[![:space:]]*}"}" ;;
      "  Installing build dependencies: started") shown="preparing to build monGARS" ;;
      "Requirement already satisfied:"*) [ -n "$tty" ] && shown=$line ;;
      "Installing collected packages:"*)
        shown="unpacking and installing the packages (torch takes longest)" ;;
      "Successfully installed"*)
        # shellcheck disable=SC2086 # split into words to count the packages
        set -- $line
        shown="installed $(($# - 2)) packages" ;;
    esac
    [ -n "$shown" ] || continue
    if [ -n "$tty" ]; then
      printf '\r\033[K[%s %3ds] pip: %.100s' "$MONGARS_SCRIPT" "$((SECONDS - MONGARS_STARTED))" \
        "$shown" >&2
    else
      say "pip: $shown"
    fi
  done
  if [ -n "$tty" ]; then printf '\r\033[K' >&2; fi
  return 0
}

# mongars_drop_old_name: uninstall the `mongars` distribution a checkout from before
# the rename to mongars-assistant installed; both would offer the same plugins.
mongars_drop_old_name() {
  if .venv/bin/python - 2>/dev/null <<'EOF'; then
import sys
from importlib import metadata
try:
    dist = metadata.distribution("mongars")
except metadata.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if any(entry.group == "mongars" for entry in dist.entry_points) else 1)
EOF
    say "uninstalling this checkout's old distribution name (mongars, now mongars-assistant)"
    .venv/bin/python -m pip uninstall --disable-pip-version-check -y -q mongars
  fi
}

# mongars_ensure_venv SPEC [ALSO_ENOUGH...]: .venv with `pip install -e SPEC` done, unless
# an install of SPEC (or of one of ALSO_ENOUGH) is already up to date.
mongars_ensure_venv() {
  local spec=$1 began
  MONGARS_PY=$(mongars_python)
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$MONGARS_PY" -V 2>&1) ($MONGARS_PY)"
    "$MONGARS_PY" -m venv .venv
  fi
  if mongars_is_installed "$@"; then
    say ".venv is up to date (pyproject.toml unchanged since the last install): no pip"
    return 0
  fi
  began=$SECONDS
  say "installing monGARS $spec into .venv with pip (the first time takes minutes: see README)"
  mongars_drop_old_name
  : >"$MONGARS_PIP_LOG"
  if ! .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off \
    -e "$spec" 2>&1 | mongars_pip_progress; then
    say "pip failed after $((SECONDS - began)) s; the end of $MONGARS_PIP_LOG:"
    tail -n 20 "$MONGARS_PIP_LOG" >&2
    exit 1
  fi
  mongars_install_key "$spec" >>"$MONGARS_STAMP"
  say "installed in $((SECONDS - began)) s ($(du -sh .venv 2>/dev/null | cut -f1) in .venv)"
}
