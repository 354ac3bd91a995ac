"""Per-model flags, declared once and shared by the research scripts.

``--model-hidden MODEL=H``, ``--model-clip MODEL=RULE``, ``--cell-options MODEL=KEY:VALUE,...``
and ``--model-path MODEL=PATH`` set one model's hidden size, gradient clipping, cell options
(each parsed by the type its cell's field declares) and execution path; ``ModelSpec`` is one model as the flags set it.  A script's config
inherits ``PerModelConfig`` for the options and the path.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import ClassVar

from rnnlab import zoo
from rnnlab.experiment.cli import BaseConfig, ConfigError, flag
from rnnlab.parametrizations import Orthogonal
from rnnlab.unroll import PATHS, resolve_path
from rnnlab.zoo import MODELS


def per_model(field: str, entries: tuple[str, ...], models: tuple[str, ...], parse) -> dict:
    """``("lstm=40", "rnn=80")`` -> ``{"lstm": parse("40"), "rnn": parse("80")}``: a per-model
    setting (``--model-hidden``, ``--model-clip``).  A ``ConfigError`` naming the flag for an
    entry without ``=``, a model not in ``models``, a model named twice or a value ``parse``
    refuses (it raises ``ValueError`` with the reason).  An entry for a model the run does not
    train is ignored here, so a script's defaults can name models a user leaves out
    (``check_per_model`` refuses such an entry when the user typed it)."""
    out = {}
    for entry in entries:
        name, sep, text = entry.partition("=")
        if not sep:
            raise ConfigError(f"{flag(field)} takes MODEL=VALUE entries, got {entry!r}")
        if name not in models:
            raise ConfigError(f"{flag(field)} names an unknown model {name!r}; choose one of {', '.join(models)}")
        if name in out:
            raise ConfigError(f"{flag(field)} names {name!r} twice")
        try:
            out[name] = parse(text)
        except ValueError as e:
            raise ConfigError(f"{flag(field)} {entry!r}: {e}") from None
    return out


def positive_int(text: str) -> int:
    value = int(text) if text.strip().lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return value


CLIP_RULES = ("off", "norm:X", "value:X")


def clip_rule(text: str) -> dict[str, float]:
    """``"off"``, ``"norm:X"`` (``clip_by_global_norm(X)``) or ``"value:X"`` (each gradient entry
    clipped to ±X, as the uRNN authors clip) -> ``{"clip_norm": ..., "clip_value": ...}`` (0 = off)."""
    if text == "off":
        return {"clip_norm": 0.0, "clip_value": 0.0}
    kind, _, bound = text.partition(":")
    try:
        value = float(bound)
    except ValueError:
        value = math.nan
    if kind not in ("norm", "value") or not math.isfinite(value) or value <= 0:
        raise ValueError(f"a clip rule is one of {', '.join(CLIP_RULES)} with X > 0, got {text!r}")
    return {"clip_norm": value if kind == "norm" else 0.0, "clip_value": value if kind == "value" else 0.0}


def model_hidden(cfg, name: str) -> int:
    """Model ``name``'s hidden size: its ``--model-hidden`` entry, else ``--hidden``."""
    return per_model("model_hidden", cfg.model_hidden, tuple(MODELS), positive_int).get(name, cfg.hidden)


def clip_written(cfg, name: str) -> str:
    """Model ``name``'s clip rule as written: its ``--model-clip`` entry, else the run's ``--clip``."""
    return per_model("model_clip", cfg.model_clip, tuple(MODELS), str).get(name, cfg.clip)


def model_clip(cfg, name: str) -> dict[str, float] | None:
    """Model ``name``'s ``--model-clip`` rule as ``{"clip_norm", "clip_value"}``, or None (the run's own)."""
    return per_model("model_clip", cfg.model_clip, tuple(MODELS), clip_rule).get(name)


def clip_of(cfg, name: str | None = None) -> dict[str, float]:
    """Model ``name``'s clipping as ``{"clip_norm", "clip_value"}``: its ``--model-clip`` rule, else
    the run's ``--clip`` rule (a bad one is a ``ConfigError`` naming ``--clip``)."""
    rule = None if name is None else model_clip(cfg, name)
    if rule is not None:
        return rule
    try:
        return clip_rule(cfg.clip)
    except ValueError as e:
        raise ConfigError(f"--clip: {e}") from None


def optimizer_rules(cfg) -> dict[str, tuple[bool, str]]:
    """``refuse_unused``'s rules for the optimizer flags the research scripts share:
    ``--rmsprop-decay`` acts under ``--optimizer rmsprop`` only, ``--orthogonal-learning-rate``
    only when a model of ``--models`` has an orthogonal generator."""
    return {
        "rmsprop_decay": (cfg.optimizer == "rmsprop", f"--optimizer is {cfg.optimizer}"),
        "orthogonal_learning_rate": (
            any(MODELS[m].wrap is Orthogonal for m in cfg.models),
            "no model of --models has an orthogonal generator (exprnn, exprnn_tanh)",
        ),
    }


def option_texts(text: str) -> dict[str, str]:
    """``"r_min:0.9,r_max:0.999"`` -> ``{"r_min": "0.9", "r_max": "0.999"}``: a model's cell options as
    written (a key given twice, or an entry without ``:``, is refused); ``typed_options`` parses them."""
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"cell options are KEY:VALUE entries joined by commas, got {item!r}")
        if key in out:
            raise ValueError(f"{key} is given twice")
        out[key] = value
    return out


def _declared_kinds(annotation) -> tuple[set[str], bool]:
    """The scalar kinds (``"int"``, ``"float"``, ``"bool"``, ``"str"``) a field's annotation admits,
    and whether it admits None (``float | None``); annotations may be strings (PEP 563)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None) or str(annotation)
    parts = {
        p.strip().removeprefix("typing.").removeprefix("builtins.")
        for p in text.replace("Optional[", "").rstrip("]").split("|")
    }
    kinds = {p for p in parts if p in ("int", "float", "bool", "str")}
    return kinds, bool(parts & {"None", "NoneType"}) or text.startswith("Optional")


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_option(key: str, text: str, annotation):
    """``text`` as the type ``annotation`` declares: an int stays an int (``num_layers:3``), a bool is
    true/false/1/0, a str as written, a float finite; ``none`` for an optional field.  One line
    naming the field and its type otherwise."""
    kinds, optional = _declared_kinds(annotation)
    if optional and text.lower() == "none":
        return None
    if "bool" in kinds and text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    if "int" in kinds and text.lstrip("+-").isdigit():
        return int(text)
    if "float" in kinds:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {text!r}")
        if value is not None:
            return value
    if "str" in kinds:
        return text
    if not kinds:
        raise ValueError(f"{key} is declared {annotation!s}, which has no command-line form")
    want = " or ".join(sorted(kinds | ({"none"} if optional else set())))
    raise ValueError(f"{key} takes {want} (declared {annotation!s}), got {text!r}")


def typed_options(name: str, texts: dict[str, str]) -> dict:
    """Model ``name``'s cell options parsed by the types its cell's dataclass fields declare
    (``t_max`` of a chrono model as a number: the zoo's own option).  An option the cell does
    not have is refused naming the ones it takes."""
    cell = _probe_cell(name)
    declared = {f.name: f.type for f in dataclasses.fields(cell)} if dataclasses.is_dataclass(cell) else {}
    declared.pop("hidden_size", None)
    if MODELS[name].needs_t_max:
        declared.setdefault("t_max", "float")
    unknown = sorted(set(texts) - set(declared))
    if unknown:
        raise ValueError(f"{name} has no option {unknown[0]!r}; its cell takes {', '.join(sorted(declared)) or 'none'}")
    return {key: parse_option(key, text, declared[key]) for key, text in texts.items()}


def cell_options(cfg, name: str) -> dict:
    """Model ``name``'s ``--cell-options`` (its cell's options, e.g. the LRU's ring) parsed by
    their declared types, else ``{}``."""
    texts = per_model("cell_options", getattr(cfg, "cell_options", ()), tuple(MODELS), option_texts).get(name)
    if not texts:
        return {}
    try:
        return typed_options(name, texts)
    except ValueError as e:
        raise ConfigError(f"--cell-options {name}: {e}") from None


def execution_path(text: str) -> str:
    if text not in PATHS:
        raise ValueError(f"a path is one of {', '.join(PATHS)}, got {text!r}")
    return text


def model_path(cfg, name: str) -> str | None:
    """Model ``name``'s ``--model-path`` (an execution path, ``rnnlab.unroll.PATHS``), else None (its cell's default)."""
    return per_model("model_path", getattr(cfg, "model_path", ()), tuple(MODELS), execution_path).get(name)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model as the run's flags set it (hashable, so a script can cache its programs on it):
    its name, hidden size (``--model-hidden``), cell options (``--cell-options``) and execution
    path (``--model-path``; None is its cell's default)."""

    name: str
    hidden: int
    cell_options: tuple[tuple[str, float], ...] = ()
    path: str | None = None

    def layer(self, *, cell_options=None, **layer_options):
        """``zoo.make_layer`` of this model (``cell_options`` add to the spec's, e.g. a swept radius)."""
        options = dict(self.cell_options) | (cell_options or {})
        return zoo.make_layer(self.name, self.hidden, cell_options=options, path=self.path, **layer_options)

    def resolved_path(self) -> str:
        """The path the model runs: ``path``, or its cell's default."""
        return resolve_path(_probe_cell(self.name, **dict(self.cell_options)), self.path)


def _probe_cell(name: str, **options):
    """Model ``name``'s cell at a tiny size, to read its kind and options (chrono's T_max must exceed 2)."""
    t_max, options = zoo.typed_t_max(name, 3, options)
    return zoo.make_cell(name, 3, t_max=t_max, **options)


def model_spec(cfg, name: str) -> ModelSpec:
    """Model ``name`` as the run trains it."""
    return ModelSpec(
        name,
        model_hidden(cfg, name) if hasattr(cfg, "model_hidden") else cfg.hidden,
        tuple(sorted(cell_options(cfg, name).items())),
        model_path(cfg, name),
    )


PER_MODEL_FIELDS = ("model_hidden", "model_clip", "cell_options", "model_path")


def check_per_model(cfg) -> None:
    """``ConfigError`` for a bad ``--model-hidden``, ``--model-clip`` or ``--cell-options`` entry
    (for ``Config.check``); the options of each model the run trains must build its cell.  An
    entry typed on the command line for a model the run does not train is refused (a script's
    defaults may name such models: they are ignored)."""
    if hasattr(cfg, "model_hidden"):
        model_hidden(cfg, "")
    if hasattr(cfg, "model_clip"):
        model_clip(cfg, "")
    per_model("cell_options", getattr(cfg, "cell_options", ()), tuple(MODELS), option_texts)
    model_path(cfg, "")  # every entry parses, trained or not
    models = getattr(cfg, "models", None)
    for field in set(PER_MODEL_FIELDS) & getattr(cfg, "explicit_flags", frozenset()):
        for entry in getattr(cfg, field):
            name = entry.partition("=")[0]
            if models is not None and name in MODELS and name not in models:
                raise ConfigError(
                    f"{flag(field)} {entry!r}: {name} is not trained by this run (--models {' '.join(models)})"
                )
    for name in getattr(cfg, "models", ()):
        if name not in MODELS:  # a script's own entry (the --models choices admitted it), not the zoo's
            continue
        try:
            resolve_path(_probe_cell(name), model_path(cfg, name))
        except ValueError as e:
            raise ConfigError(f"--model-path {name}: {e}") from None
        options = cell_options(cfg, name)  # parsed by declared type: unknown keys and wrong types refused
        if not options:
            continue
        try:  # a chrono model's T_max may be typed (t_max:1500); any other model has none
            zoo.typed_t_max(name, None, options)
        except ValueError as e:
            raise ConfigError(f"--cell-options {name}: {e}") from None
        # make_cell's other keywords (forget_bias) come from the script, not from the cell options
        own = sorted(set(options) & set(inspect.signature(zoo.make_cell).parameters) - {"t_max"})
        if own:
            raise ConfigError(
                f"--cell-options: {name}'s {own[0]} is the zoo's to set (a script's own flag, where it has one, "
                "e.g. --forget-bias), not a cell option"
            )
        try:
            _probe_cell(name, **options)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--cell-options {name}: {e}") from None


@dataclasses.dataclass
class PerModelConfig(BaseConfig):
    """The per-model flags every research script takes (``MODEL=VALUE`` entries, checked by
    ``check_per_model``).  A script that also sets sizes or clipping per model adds
    ``model_hidden`` / ``model_clip`` (``model_hidden``, ``model_clip`` read them)."""

    cell_options: tuple[str, ...] = ()  # MODEL=KEY:VALUE,...: a model's cell options, e.g. lru=r_min:0.9
    model_path: tuple[str, ...] = ()  # MODEL=PATH: a model's execution path (rnnlab.unroll.PATHS)

    # the run-wide flags a per-model default yields to: a typed --hidden beats the script's
    # default --model-hidden entries (typed --model-hidden entries still win for their models)
    RUN_WIDE: ClassVar[dict[str, tuple[str, ...]]] = {
        "model_hidden": ("hidden",),
        "model_clip": ("clip", "clip_norm", "clip_value"),
    }

    def apply_explicit(self, explicit: frozenset[str]) -> None:
        super().apply_explicit(explicit)
        for field, run_wide in self.RUN_WIDE.items():
            if hasattr(self, field) and field not in explicit and explicit & set(run_wide):
                setattr(self, field, ())

    def check(self) -> None:
        super().check()
        check_per_model(self)
