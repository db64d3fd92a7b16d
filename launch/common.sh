# Shared by the launch scripts: `run CMD...` executes CMD, or with DRY_RUN=1 prints it
# (shell-quoted, one line per command) so a launch can be reviewed before it spends money.
DRY_RUN=${DRY_RUN:-0}

# One word as the shell would need it typed: bare when safe, else in single quotes.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@+%-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# A whole command line, each word quoted as needed.
quote_all() {
  local out=() word
  for word in "$@"; do
    out+=("$(quote "$word")")
  done
  printf '%s' "${out[*]}"
}

run() {
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '%s\n' "$(quote_all "$@")"
  else
    "$@"
  fi
}

die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

# `--key=value` -> value; used as: value=$(flag_value "$arg")
flag_value() {
  printf '%s' "${1#*=}"
}
