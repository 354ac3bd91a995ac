"""The named models the experiments compare: one table.

    layer = make_layer("lstm_chrono", 64, t_max=200)    # an RNN (or a wrapper of one)
    MODELS["lstm_chrono"].label                           # its name in figures and legends

Each entry says how to build the model's cell, whether a parametrisation wraps
the layer, the options it needs (chrono's ``T_max``) and how figures and
``results.json`` call it (label and colour).  Every script's ``--models`` (or
``--cell``) choices and every legend come from here, so a new model is one entry;
a cell written outside rnnlab joins with one ``register`` call (docs/extending.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from rnnlab.cells import CoRNNCell, ElmanCell, GRUCell, IndRNNCell, LSTMCell
from rnnlab.layers import RNN
from rnnlab.linear import LRUBlock, MinGRUCell, MinLSTMCell
from rnnlab.parametrizations import IndRNNStack, Orthogonal
from rnnlab.pararnn import ParaGRUCell, ParaLSTMCell
from rnnlab.unroll import Cell


@dataclasses.dataclass(frozen=True)
class NamedModel:
    """``cell(hidden_size, forget_bias=, t_max=, **cell_options) -> Cell``; ``wrap`` (optional)
    reparametrises the layer; ``label`` (may use ``{forget_bias:g}``, ``{t_max}``) names it in
    figures, drawn in ``color`` (any matplotlib colour)."""

    label: str
    description: str
    cell: Callable[..., Cell]
    color: str = "tab:gray"
    wrap: Callable[[RNN], object] | None = None
    needs_t_max: bool = False  # chrono: T_max, the longest dependency (usually the sequence length)
    t_max_constrains: bool = False  # T_max also sets the training constraint (IndRNN's bound): one T per program
    takes_forget_bias: bool = False  # its cell takes make_cell's forget_bias (may be traced: a sweep over it)
    plain: bool = False  # a cell with its standard init: the applications' --cell choices

    def __post_init__(self):
        """Each field by its declared type, refused here in one line (not later, in ``make_layer``)."""
        for name in ("label", "description"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise TypeError(f"NamedModel {name} must be a non-empty string, got {value!r}")
        if not callable(self.cell):
            raise TypeError(
                f"NamedModel cell must be a callable (hidden_size, **options) -> Cell, got {self.cell!r} "
                f"({type(self.cell).__name__})"
            )
        if self.wrap is not None and not callable(self.wrap):
            raise TypeError(f"NamedModel wrap must be a callable RNN -> layer or None, got {self.wrap!r}")
        for name in ("needs_t_max", "t_max_constrains", "takes_forget_bias", "plain"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"NamedModel {name} must be True or False, got {getattr(self, name)!r}")
        from matplotlib.colors import is_color_like

        if isinstance(self.color, bool) or not is_color_like(self.color):
            raise ValueError(
                f"NamedModel color must be a matplotlib colour ('tab:blue', '#1f77b4', ...), got {self.color!r}"
            )
        try:
            self.label.format(forget_bias=1.0, t_max="T")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"NamedModel label {self.label!r} may use only {{forget_bias:g}} and {{t_max}} ({type(e).__name__}: {e})"
            ) from None


MODELS: dict[str, NamedModel] = {
    "rnn": NamedModel(
        "tanh RNN, PyTorch init",
        "tanh Elman RNN, PyTorch uniform(±1/√H) init",
        color="tab:red",
        cell=lambda H, **o: ElmanCell(H, **o),
        plain=True,
    ),
    "rnn_relu": NamedModel(
        "ReLU RNN, PyTorch init",
        "ReLU Elman RNN, PyTorch uniform(±1/√H) init",
        color="tab:orange",
        cell=lambda H, **o: ElmanCell(H, **{"activation": "relu", **o}),
        plain=True,
    ),
    "irnn": NamedModel(
        "IRNN: ReLU, W_hh = I",
        "IRNN: ReLU Elman RNN, identity recurrent init, zero biases (Le et al. 2015)",
        color="tab:purple",
        cell=lambda H, **o: ElmanCell(
            H, **{"activation": "relu", "recurrent_init": "identity", "bias_init": "zeros", **o}
        ),
        plain=True,
    ),
    "lstm": NamedModel(
        "LSTM, forget bias {forget_bias:g}",
        "LSTM, PyTorch init, forget-gate bias set by forget_bias",
        color="tab:blue",
        cell=lambda H, forget_bias, **o: LSTMCell(H, forget_bias=forget_bias, **o),
        takes_forget_bias=True,
        plain=True,
    ),
    "gru": NamedModel(
        "GRU, PyTorch init",
        "GRU, PyTorch uniform(±1/√H) init",
        color="tab:green",
        cell=lambda H, **o: GRUCell(H, **o),
        plain=True,
    ),
    "lstm_chrono": NamedModel(
        "LSTM, chrono init, T_max = {t_max}",
        "LSTM, chrono initialisation with T_max = the sequence length (Tallec & Ollivier 2018)",
        color="tab:cyan",
        cell=lambda H, t_max, **o: LSTMCell(H, t_max=float(t_max), **o),
        needs_t_max=True,
    ),
    "gru_chrono": NamedModel(
        "GRU, chrono init, T_max = {t_max}",
        "GRU, chrono initialisation of the update gate, T_max = the sequence length",
        color="tab:olive",
        cell=lambda H, t_max, **o: GRUCell(H, t_max=float(t_max), **o),
        needs_t_max=True,
    ),
    "rnn_orthogonal": NamedModel(
        "tanh RNN, orthogonal init",
        "tanh Elman RNN, orthogonal recurrent init",
        color="tab:brown",
        cell=lambda H, **o: ElmanCell(H, **{"recurrent_init": "orthogonal", **o}),
    ),
    "exprnn": NamedModel(
        "expRNN: modReLU, W_hh = expm(S)",
        "expRNN as in the authors' code (Lezcano-Casado & Martinez-Rubio 2019, lezcano/expRNN): "
        "h = modReLU(W_ih x + W_hh h), no input or hidden bias, modReLU bias U(-0.01, 0.01), "
        "W_ih ~ kaiming_normal, W_hh = expm(S) kept orthogonal, Henaff rotation init",
        color="tab:pink",
        cell=lambda H, **o: ElmanCell(
            H, **{"activation": "modrelu", "use_bias": False, "input_init": "kaiming_normal", **o}
        ),
        wrap=Orthogonal,
    ),
    "exprnn_tanh": NamedModel(
        "tanh RNN, W_hh = expm(S)",
        "not the paper's model: tanh Elman RNN with PyTorch-style biases and init, "
        "W_hh = expm(S) kept orthogonal (expRNN's parametrisation only)",
        color="tab:gray",
        cell=lambda H, **o: ElmanCell(H, **o),
        wrap=Orthogonal,
    ),
    "lru": NamedModel(
        "LRU, ring init",
        "Linear Recurrent Unit (Orvieto et al. 2023): diagonal complex linear recurrence, "
        "exponential parametrisation, gamma normalisation, ring init (r_min 0, r_max 1, max phase 2 pi)",
        color="black",
        cell=lambda H, **o: LRUBlock(H, **o),
    ),
    "mingru": NamedModel(
        "minGRU",
        "minGRU (Feng et al. 2024): h = (1 - z) h + z g(W_h x), z = sigmoid(W_z x); gates from x only",
        color="gold",
        cell=lambda H, **o: MinGRUCell(H, **o),
    ),
    "minlstm": NamedModel(
        "minLSTM",
        "minLSTM (Feng et al. 2024): h = f/(f+i) h + i/(f+i) g(W_h x); gates from x only",
        color="navy",
        cell=lambda H, **o: MinLSTMCell(H, **o),
    ),
    "indrnn": NamedModel(
        "IndRNN, |u| <= 2^(1/{t_max})",
        "IndRNN (Li et al. 2018) as in the authors' adding-problem code: h = relu(W x + u * h + b), "
        "W ~ N(0, 0.001^2), b = 0, u ~ U(2^(-1/T_max), 2^(1/T_max)) in the last layer and U(0, 2^(1/T_max)) "
        "below it, |u| clipped to 2^(1/T_max) after each step",
        color="firebrick",
        cell=lambda H, t_max, **o: IndRNNCell(H, t_max=float(t_max), **o),
        wrap=IndRNNStack,
        needs_t_max=True,
        t_max_constrains=True,
    ),
    "cornn": NamedModel(
        "coRNN, dt 0.06, gamma 66, eps 15",
        "coRNN (Rusch & Mishra 2021): coupled oscillators, IMEX step, the authors' adding-task "
        "dt 0.06, gamma 66, epsilon 15; one Linear over (x, z, y), torch's init",
        color="darkgreen",
        cell=lambda H, **o: CoRNNCell(H, **o),
    ),
    "paragru": NamedModel(
        "ParaGRU (diagonal recurrence)",
        "ParaRNN's diagonal GRU as in the authors' code (Danieli et al. 2025, apple/ml-pararnn GRUDiagMH): "
        "z, r and candidate gates with diagonal recurrences A, input projection B, the authors' init "
        "(xlstm A, xavier_uniform B, update-gate bias -linspace(0, 1)); one input head here (the scripts' "
        "inputs are 1 or 2 wide; num_heads:2 is the authors' default); quasi_newton is exact Newton for it",
        color="mediumvioletred",
        cell=lambda H, **o: ParaGRUCell(H, **{"num_heads": 1, **o}),
    ),
    "paralstm": NamedModel(
        "ParaLSTM (diagonal CIFG LSTM)",
        "ParaRNN's diagonal LSTM with coupled input and forget gates and peepholes, as in the authors' code "
        "(apple/ml-pararnn LSTMCIFGDiagMH): diagonal recurrences A and C, the authors' init; one input head "
        "here (num_heads:2 is the authors' default); quasi_newton (2x2 blocks per unit) is exact Newton for it",
        color="darkmagenta",
        cell=lambda H, **o: ParaLSTMCell(H, **{"num_heads": 1, **o}),
    ),
}
CELLS = tuple(name for name, model in MODELS.items() if model.plain)  # the applications' --cell choices


def register(name: str, model: NamedModel) -> NamedModel:
    """Add ``model`` to the table as ``name``: from then on every script, ``make_layer`` and
    figure know it (``--models name``).  A name already taken is an error: models are
    compared by name, so one must not silently change meaning."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a model name must be an identifier (letters, digits, _), got {name!r}")
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered ({MODELS[name].description})")
    if not isinstance(model, NamedModel):
        raise TypeError(f"register takes a rnnlab.zoo.NamedModel, got {type(model).__name__}")
    MODELS[name] = model
    return model


def color(name: str) -> str:
    """Model ``name``'s colour in every figure."""
    return _model(name).color


def _model(name: str) -> NamedModel:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def make_cell(name: str, hidden_size: int, *, forget_bias: float = 1.0, t_max=None, **cell_options) -> Cell:
    """The cell of model ``name``; ``cell_options`` go to the cell (e.g. ``spectral_radius=1.5``).

    ``forget_bias`` is the plain LSTM's (it may be traced: a sweep over it shares one
    program); ``t_max`` is needed by the chrono models."""
    model = _model(name)
    if model.needs_t_max:
        if t_max is None:
            raise ValueError(f"{name} needs t_max (the sequence length) for its chrono initialisation")
        cell_options["t_max"] = t_max
    if model.takes_forget_bias:
        cell_options["forget_bias"] = forget_bias
    return model.cell(hidden_size, **cell_options)


def typed_t_max(name: str, t_max, cell_options: dict):
    """``(t_max, the other options)``: a ``t_max`` among a model's cell options is one the user typed
    (``--cell-options lstm_chrono=t_max:1500``) and replaces the script's ``t_max``; refused for a
    model registered without ``needs_t_max`` (``t_max`` is the zoo's name for T_max, which the scripts
    set to the sequence length for the models that need it)."""
    options = dict(cell_options)
    if "t_max" in options and not _model(name).needs_t_max:
        raise ValueError(
            f"{name} has no chrono initialisation, so t_max does not apply to it (t_max is the zoo's T_max, "
            "passed to models registered with NamedModel(needs_t_max=True))"
        )
    return options.pop("t_max", t_max), options


def make_layer(
    name: str, hidden_size: int, *, forget_bias: float = 1.0, t_max=None, cell_options=None, **layer_options
):
    """The layer of model ``name``: ``RNN(make_cell(...), **layer_options)``, wrapped by its
    parametrisation if it has one (e.g. ``num_layers=2, bidirectional=True``)."""
    t_max, options = typed_t_max(name, t_max, cell_options or {})
    cell = make_cell(name, hidden_size, forget_bias=forget_bias, t_max=t_max, **options)
    layer = RNN(cell, **layer_options)
    wrap = MODELS[name].wrap
    return layer if wrap is None else wrap(layer)


def label(name: str, *, forget_bias: float = 1.0, t_max="T") -> str:
    """How figures and legends call model ``name`` (``t_max``: how the script sets chrono's T_max)."""
    return _model(name).label.format(forget_bias=forget_bias, t_max=t_max)
