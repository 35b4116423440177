# Generated from core/methods.py by `python -m core.methods shell`; do not edit.
# method_flags METHOD [BETA]: the coreset flags of a named method (BETA: --mis-ratio)
METHODS=""
PEER_METHODS=""

method_flags() {
  case "$1" in
    *) echo "error: unknown method $1" >&2; return 2 ;;
  esac
}
