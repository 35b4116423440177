# Shared by quickstart.sh and reproduce.sh. The named methods and their coreset flags
# (METHODS, PEER_METHODS, RECENT_METHODS, ALL_METHODS, method_flags METHOD [BETA]) come from the method registry,
# core/methods.py, through the generated methods_table.sh.
source "$(dirname "${BASH_SOURCE[0]}")/methods_table.sh"

# keep fraction for a pruning rate, e.g. 0.9 -> 0.1
keep_ratio() { awk -v r="$1" 'BEGIN { printf "%g", 1 - r }'; }

fail() { echo "error: $*" >&2; exit 2; }

# check_list FLAG VALUES KIND: every comma-separated value is a number of that kind
# (fraction: a pruning rate in (0, 1); beta: a hard-cut ratio in [0, 1); integer: a seed)
check_list() {
  local value
  [ -n "$2" ] || fail "$1 needs a value"
  for value in ${2//,/ }; do
    case "$3" in
      integer) [[ "$value" =~ ^[0-9]+$ ]] || fail "$1: '$value' is not a whole number" ;;
      fraction|beta)
        [[ "$value" =~ ^(0?\.[0-9]+|0|1|1\.0*|0\.)$ ]] ||
          fail "$1: '$value' is not a number between 0 and 1"
        if [ "$3" = fraction ]; then
          awk -v v="$value" 'BEGIN { exit !(v > 0 && v < 1) }' ||
            fail "$1: '$value' must be above 0 and below 1"
        else
          awk -v v="$value" 'BEGIN { exit !(v >= 0 && v < 1) }' ||
            fail "$1: '$value' must be at least 0 and below 1"
        fi ;;
    esac
  done
}

# check_methods FLAG LIST: every comma-separated name is a method above, none twice
check_methods() {
  local name seen=" "
  for name in ${2//,/ }; do
    case " $ALL_METHODS " in
      *" $name "*) ;;
      *) fail "$1: unknown method '$name' (choose from: $ALL_METHODS)" ;;
    esac
    case "$seen" in *" $name "*) fail "$1: '$name' is named twice" ;; esac
    seen="$seen$name "
  done
}

# d2's hard cut at a pruning rate: the D2 authors' 0.4, lowered where the coreset and the
# cut would not fit in the training set (keep + beta <= 1), e.g. 0.3 -> 0.3, 0.5 -> 0.4
d2_beta() { awk -v r="$1" 'BEGIN { b = 0.4; if (b > r) b = r; printf "%g", b }'; }
