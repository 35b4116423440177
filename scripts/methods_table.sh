# Generated from core/methods.py by `python -m core.methods shell`; do not edit.
# method_flags METHOD [BETA]: the coreset flags of a named method (BETA: --mis-ratio)
METHODS="random ccs forgetting accumulated_margin el2n entropy moderate"
PEER_METHODS="d2 kcenter"
RECENT_METHODS="tdds dyn_unc dual rs2"
ALL_METHODS="random ccs forgetting accumulated_margin el2n entropy moderate d2 kcenter loss tdds dyn_unc dual rs2"

method_flags() {
  case "$1" in
    random) echo "--coreset-mode random" ;;
    ccs) echo "--coreset-mode stratified --coreset-key accumulated_margin --mis-ratio ${2:-0.3}" ;;
    forgetting) echo "--coreset-mode coreset --coreset-key forgetting --data-score-descending 1" ;;
    accumulated_margin) echo "--coreset-mode coreset --coreset-key accumulated_margin --data-score-descending 0" ;;
    el2n) echo "--coreset-mode coreset --coreset-key el2n --data-score-descending 1" ;;
    entropy) echo "--coreset-mode coreset --coreset-key entropy --data-score-descending 1" ;;
    moderate) echo "--coreset-mode moderate --coreset-key moderate_distance" ;;
    d2) echo "--coreset-mode d2 --coreset-key forgetting --data-score-descending 1 --class-balanced 1 --d2-neighbors 5 --d2-forward-gamma 1 --d2-reverse-gamma 0.1 --mis-ratio ${2:-0.4}" ;;
    kcenter) echo "--coreset-mode kcenter" ;;
    loss) echo "--coreset-mode coreset --coreset-key loss --data-score-descending 1" ;;
    tdds) echo "--coreset-mode coreset --coreset-key tdds --data-score-descending 1" ;;
    dyn_unc) echo "--coreset-mode coreset --coreset-key dyn_unc --data-score-descending 1" ;;
    dual) echo "--coreset-mode dual" ;;
    rs2) echo "--coreset-mode rs2" ;;
    *) echo "error: unknown method $1" >&2; return 2 ;;
  esac
}
