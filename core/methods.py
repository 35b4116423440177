"""The registry of selection methods: one entry per `--coreset-mode`, and the named methods
(presets) that the scripts, the report and the docs use.

A new method is one function plus one `register(Method(...))` call (see
examples/toy_method.py). The entry names what the function reads (scores, features, or
nothing), the parameters it takes with their defaults and bounds (each becomes a flag of
train.py and train_imagenet.py), whether it honours the CCS hard cut, and its name in results.
`--coreset-mode`'s choices, the flag checks (core.settings.Selection), scripts/methods.sh
(generated: `python -m core.methods shell`), the report's method order and the docs table
(`python -m core.methods markdown`) are all derived from here.

The built-in methods register themselves in core.coreset, next to their code.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import UserError

SCORES, FEATURES = "scores", "features"  # what a method reads besides the training labels


@dataclass(frozen=True)
class Param:
    """A method's own numeric parameter: `--<name with dashes>` on the command line, checked
    against [low, high] (`low_open` excludes low) and, for kind int, to be a whole number.
    `what` names it in messages ("the number of neighbours"), `help` is the flag's help."""

    name: str
    default: float
    what: str
    help: str
    kind: type = float
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value):
        """The value as `kind`, or a UserError naming the flag and the bounds."""
        whole = self.kind is int
        ok = not isinstance(value, bool) and isinstance(value, (int, float))
        ok = ok and math.isfinite(value) and (not whole or int(value) == value)
        ok = (
            ok and (value > self.low if self.low_open else value >= self.low) and value <= self.high
        )
        if not ok:
            raise UserError(f"{self.flag}: {self.what} must be {self.bounds()}, got {value}")
        return int(value) if whole else float(value)

    def bounds(self) -> str:
        if self.kind is int and self.low == 1 and self.high == math.inf:
            return "a positive integer"
        what = "an integer" if self.kind is int else "finite"
        if self.low == -math.inf and self.high == math.inf:
            return what
        low = f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return f"{what} and {low}" + (
            "" if self.high == math.inf else f" and at most {self.high:g}"
        )


@dataclass(frozen=True)
class Preset:
    """A named method of the scripts and the report: a mode with its flags, e.g. forgetting =
    `--coreset-mode coreset --coreset-key forgetting --data-score-descending 1`. `beta` is the
    default hard cut (`--mis-ratio`) of methods that take one. `group`: "main" (the quickstart's
    default methods), "peer" (the peers that reproduce.sh runs too), "recent" (the 2023-2025
    training-dynamics baselines, CIFAR family) or "extra" (named, not run
    by default); `order` places it in lists, the report's included."""

    name: str
    flags: str
    beta: float | None = None
    group: str = "extra"
    order: int = 100


@dataclass(frozen=True)
class Method:
    """One selection mode. `select(context)` returns the dataset indices (any order, distinct)
    it keeps; the context (core.coreset.Context) carries the checked selection, the number of
    examples, the score data, the features and a seeded generator."""

    mode: str
    select: Callable
    summary: str
    label: str = ""  # in --coreset-mode's help after the mode, e.g. "(CCS)"
    inputs: tuple[str, ...] = ()
    default_key: str | None = None
    needs_key: bool = False  # a key must be given or defaulted
    needs_targets: bool = False  # reads the score file's targets whatever class_balanced says
    reads_key: bool = True  # the key is read from the score file (k-center reads none)
    hard_cut: bool = False  # honours --mis-ratio, --mis-key, --mis-data-score-descending
    extra_keys: tuple[str, ...] = ()  # score keys read besides the key (DUAL's mean probability)
    # a dynamic method (RS2): epoch_subsets(selection, targets, seed) -> an object with `.size`
    # and `.indices(epoch)`, the training set of each epoch; `select` gives epoch 0's
    epoch_subsets: Callable | None = None
    params: tuple[Param, ...] = ()
    presets: tuple[Preset, ...] = ()
    # the name in results: a fixed name, or (for score-ranked modes) the key
    result_name: str | None = None

    def name_of(self, key: str | None) -> str:
        return self.result_name or str(key)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a selection mode (the name must be new; parameter flags must not clash)."""
    if method.mode in METHODS:
        raise ValueError(f"a coreset mode '{method.mode}' is already registered")
    for param in method.params:
        if any(param.name == p.name for m in METHODS.values() for p in m.params):
            raise ValueError(f"parameter {param.flag} is already another mode's")
    METHODS[method.mode] = method
    return method


def method(mode: str) -> Method:
    """The registered mode, or a UserError listing them."""
    _builtins()
    if mode is None:
        raise UserError(f"--coreset-mode: a coreset needs a mode, one of: {', '.join(METHODS)}")
    if mode not in METHODS:
        raise UserError(
            f"--coreset-mode: unknown coreset mode '{mode}'; choose one of: {', '.join(METHODS)}"
        )
    return METHODS[mode]


def modes() -> tuple[str, ...]:
    _builtins()
    return tuple(METHODS)


def all_params() -> list[Param]:
    _builtins()
    return [param for entry in METHODS.values() for param in entry.params]


def presets(group: str | None = None) -> list[Preset]:
    """The named methods (of one group), in list order."""
    _builtins()
    found = [preset for entry in METHODS.values() for preset in entry.presets]
    return sorted((p for p in found if group in (None, p.group)), key=lambda p: p.order)


def modes_help() -> str:
    """--coreset-mode's help: "random, coreset (score-ranked), ... or kcenter (k-center greedy)"."""
    names = [f"{mode} {METHODS[mode].label}".strip() for mode in modes()]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


def method_name(mode: str, key: str | None) -> str:
    """Name of a selection in results: the mode's result name (ccs, random, d2, ...), or the
    key for score-ranked selection."""
    return method(mode).name_of(key)


def result_order() -> tuple[str, ...]:
    """The report's method order: full data, then every mode with a fixed name, then the
    score-ranked named methods."""
    _builtins()
    fixed = [m.result_name for m in METHODS.values() if m.result_name]
    ranked = [p.name for p in presets() if p.name not in fixed]
    return ("full", *fixed, *dict.fromkeys(ranked))


def _builtins() -> None:
    import core.coreset  # noqa: F401  (registers the built-in modes)


# ---- derived files: scripts/methods_table.sh and the docs table ---------------------------
def shell_table() -> str:
    """The method list and `method_flags` of scripts/methods_table.sh."""
    main = " ".join(p.name for p in presets("main"))
    peers = " ".join(p.name for p in presets("peer"))
    recent = " ".join(p.name for p in presets("recent"))
    every = " ".join(p.name for p in presets())
    lines = [
        "# Generated from core/methods.py by `python -m core.methods shell`; do not edit.",
        "# method_flags METHOD [BETA]: the coreset flags of a named method (BETA: --mis-ratio)",
        f'METHODS="{main}"',
        f'PEER_METHODS="{peers}"',
        f'RECENT_METHODS="{recent}"',
        f'ALL_METHODS="{every}"',
        "",
        "method_flags() {",
        '  case "$1" in',
    ]
    for preset in presets():
        beta = f" --mis-ratio ${{2:-{preset.beta:g}}}" if preset.beta is not None else ""
        lines.append(f'    {preset.name}) echo "{preset.flags}{beta}" ;;')
    lines += ['    *) echo "error: unknown method $1" >&2; return 2 ;;', "  esac", "}", ""]
    return "\n".join(lines)


def markdown_table() -> str:
    """The docs table of selection modes (README "Selection methods")."""
    _builtins()
    rows = [
        "| `--coreset-mode` | in results | reads | hard cut | parameters | what it keeps |",
        "|---|---|---|---|---|---|",
    ]
    for m in METHODS.values():
        reads = ", ".join(m.inputs) or "nothing"
        params = ", ".join(f"`{p.flag}` ({p.default:g})" for p in m.params) or "—"
        name = m.result_name or "the key"
        cut = "yes" if m.hard_cut else "—"
        rows.append(f"| `{m.mode}` | {name} | {reads} | {cut} | {params} | {m.summary} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    # through the imported module: run as __main__, this file is a second copy of it, which
    # the built-in methods do not register into
    from core import methods

    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what not in ("shell", "markdown"):
        sys.exit("usage: python -m core.methods shell|markdown")
    sys.stdout.write(methods.shell_table() if what == "shell" else methods.markdown_table())
