# Shared by quickstart.sh and reproduce.sh: the coreset flags of each method, as in the
# original README (forgetting and EL2N keep the largest scores, AUM the smallest).
# Usage: method_flags METHOD [BETA]   (BETA: the hard-cut ratio, --mis-ratio, of ccs and d2)
METHODS="random ccs forgetting accumulated_margin el2n entropy moderate"
# the feature-space peers (docs/FAITHFULNESS.md G rows); reproduce.sh runs them too
PEER_METHODS="d2 kcenter"

method_flags() {
  case "$1" in
    random) echo "--coreset-mode random" ;;
    ccs) echo "--coreset-mode stratified --coreset-key accumulated_margin --mis-ratio ${2:-0.3}" ;;
    forgetting) echo "--coreset-mode coreset --coreset-key forgetting --data-score-descending 1" ;;
    accumulated_margin)
      echo "--coreset-mode coreset --coreset-key accumulated_margin --data-score-descending 0" ;;
    el2n) echo "--coreset-mode coreset --coreset-key el2n --data-score-descending 1" ;;
    entropy) echo "--coreset-mode coreset --coreset-key entropy --data-score-descending 1" ;;
    moderate) echo "--coreset-mode moderate --coreset-key moderate_distance" ;;
    # D2 pruning with the D2 authors' CIFAR-10/100 command: per-class graphs of 5 neighbours,
    # forgetting as importance, reverse gamma 0.1 (forward gamma 1 is their code's)
    d2) echo "--coreset-mode d2 --coreset-key forgetting --data-score-descending 1" \
             "--class-balanced 1 --mis-ratio ${2:-0.4} --d2-neighbors 5 --d2-forward-gamma 1" \
             "--d2-reverse-gamma 0.1" ;;
    kcenter) echo "--coreset-mode kcenter" ;;
    *) echo "error: unknown method $1" >&2; return 2 ;;
  esac
}

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
    case " $METHODS $PEER_METHODS " in
      *" $name "*) ;;
      *) fail "$1: unknown method '$name' (choose from: $METHODS $PEER_METHODS)" ;;
    esac
    case "$seen" in *" $name "*) fail "$1: '$name' is named twice" ;; esac
    seen="$seen$name "
  done
}

# d2's hard cut at a pruning rate: the D2 authors' 0.4, lowered where the coreset and the
# cut would not fit in the training set (keep + beta <= 1), e.g. 0.3 -> 0.3, 0.5 -> 0.4
d2_beta() { awk -v r="$1" 'BEGIN { b = 0.4; if (b > r) b = r; printf "%g", b }'; }
