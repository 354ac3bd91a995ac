"""Pure sequential cells and their contract: Elman (tanh, ReLU, modReLU), LSTM, GRU, IndRNN, coRNN.

A cell is a frozen dataclass of static hyperparameters with three pure methods (``Cell``, the
smallest contract, as Haiku's ``RNNCore`` and Equinox's cells)::

    params = cell.init(key, input_size)              # a dict of arrays
    carry = cell.initial_carry((batch,))             # zeros
    carry, y = cell.step(params, carry, x)           # one step; a Python loop of these is the reference

That is enough for the ``autodiff``, ``remat``, ``newton`` and ``quasi_newton`` paths, stacks,
bidirectional layers, lengths, the diagnostics and the scripts (by name, once registered in
``rnnlab.zoo``).  Everything else is opt-in and has a default here (``paths``, ``hidden_size``,
``carry_hidden``, ``param_specs``, ...: the module functions of the same names read the cell's
method when it has one).

The ``fused`` path is opt-in (``FusedCell``): a step in pieces that the cell owns, so that
``rnnlab.scan`` and ``rnnlab.fused`` never multiply by a weight themselves::

    project = cell.projector(params)                 # built once per scan, outside its loop
    proj = project(x, carry)                         # (xp + hp,) if sums_projections else (xp, hp)
    carry, y = cell.gates(carry, proj, elementwise)  # elementwise arithmetic
    d_carry = cell.recurrent_vjp(params, d_carry, dhp)  # += the VJP of project_recurrent: the fused backward, per step
    d_params, dx = cell.projection_vjp(params, x_ni, carries_n, d_proj_n)  # ... and over all steps at once

``DenseCell`` implements it for a dense recurrent matrix (Elman, LSTM, GRU: params in
PyTorch's layout, gates fused along the first axis: ``w_ih [G*H, I]``, ``w_hh [G*H, H]``,
``b_ih [G*H]``, ``b_hh [G*H]``, the biases absent when ``use_bias=False``); ``CellBase`` is the
plumbing every fused cell shares.  A new dense cell subclasses ``DenseCell`` and writes ``gates``;
any other recurrence subclasses ``CellBase`` (``IndRNNCell``: a diagonal ``u``; ``CoRNNCell``: a carry
``(y, z)``).  docs/extending.md walks through cells written outside the package.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, ClassVar, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from rnnlab import initializers
from rnnlab.validation import check_number, check_positive_int

Params = dict[str, jax.Array]


def modrelu(z: jax.Array, b: jax.Array) -> jax.Array:
    r"""modReLU (Arjovsky, Shah & Bengio 2016), real-valued as in expRNN:

        modReLU(z) = sign(z) * relu(|z| + b)

    A unit passes ``z`` shrunk towards 0 by ``-b`` (or grown by ``b > 0``); ``|z| < -b``
    gives 0.  The bias enters after ``|z|``, which is why it is not a projection bias."""
    return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + b)


ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "linear": lambda z: z, "modrelu": modrelu}


class LSTMState(NamedTuple):
    """The LSTM carry: hidden state ``h`` and cell state ``c``, each ``[..., H]``."""

    h: jax.Array
    c: jax.Array


class Cell(Protocol):
    """The smallest contract: what every execution path, the diagnostics and the scripts call.

    ``init`` and ``initial_carry`` may also take ``dtype`` (else their floating arrays are cast).
    The carry is a ``[..., H]`` array, or a NamedTuple of ``[..., H]`` fields whose hidden state
    is the field ``h`` (else give ``carry_hidden``/``replace_hidden``).  ``y`` is ``[..., H]``.

    Optional, each with the default the module function of the same name gives:
      ``hidden_size`` (H: read off ``initial_carry``), ``paths`` (``STEP_PATHS``; a cell that
      lists ``"fused"`` must be a ``FusedCell``), ``carry_hidden(carry)``/``replace_hidden(carry, h)``,
      ``param_specs(input_size, dtype)`` (``jax.eval_shape`` of ``init``), ``input_size_of(params)``
      (None: the inputs' width is used), ``constrain(params)`` (the identity),
      ``recurrent_blocks(params)`` (None: no fixed recurrent matrix).
    """

    def init(self, key: jax.Array, input_size: int) -> Params:
        """Fresh params for inputs of width ``input_size``."""

    def initial_carry(self, batch_shape: tuple[int, ...]) -> Any:
        """The zero carry for ``batch_shape``."""

    def step(self, params: Params, carry, x: jax.Array):
        """One step: ``(new carry, y [..., H])``."""


@dataclasses.dataclass(frozen=True)
class StepOnly:
    """``cell`` through the three-method contract alone: its fused pieces and Jacobian structure
    hidden, so every path takes the generic route a user's cell takes (the Newton paths read
    the step's Jacobian by ``jax.jacfwd``): for comparing a built-in cell against it."""

    cell: Cell

    def init(self, key, input_size: int, dtype=jnp.float32) -> Params:
        return self.cell.init(key, input_size, dtype)

    def initial_carry(self, batch_shape, dtype=jnp.float32):
        return self.cell.initial_carry(batch_shape, dtype)

    def step(self, params: Params, carry, x: jax.Array):
        return self.cell.step(params, carry, x)


class FusedCell(Cell, Protocol):
    """The opt-in contract of the ``fused`` path (a custom VJP whose weight gradients are single
    matmuls over all steps): the step in the cell's own pieces.  ``CellBase`` gives all of them
    from ``project_inputs``, ``project_recurrent`` and ``gates``; ``DenseCell`` from ``gates``.

    Class-level switches (``ClassVar``s, never options; checked when the class is defined):
      ``sums_projections`` (``CellBase``: True): ``gates`` reads the projections only through
        ``xp + hp``, so the scan hands it ``(xp + hp,)`` and the fused backward saves one array
        per step; False hands it ``(xp, hp)`` (the GRU's ``r * (W_hn h + b_hn)``).
      ``elementwise`` (``()``): names of params that ``gates`` reads (modReLU's ``b_mod``), each ``[H]``.
      ``num_gates`` (``DenseCell``: 1): G, the gate blocks of ``w_ih``/``w_hh``.
    """

    sums_projections: bool
    elementwise: tuple[str, ...]

    def project_inputs(self, params: Params, x: jax.Array) -> jax.Array:
        """The input's part of the pre-activations, ``x [..., I] -> [..., P]``; linear in ``params``
        and ``x`` up to a bias, so its weight gradient over all steps is one VJP."""

    def project_recurrent(self, params: Params, carry) -> jax.Array:
        """The recurrent part ``[..., P]`` from the previous carry; affine in the carry."""

    def projector(self, params: Params):
        """``(x, carry) -> projections``, ``(xp + hp,)`` if ``sums_projections`` else ``(xp, hp)``,
        with whatever does not change from step to step (transposed weights, summed biases)
        computed once: a scan calls it outside its loop."""

    def elementwise_params(self, params: Params) -> Params:
        """The params ``gates`` reads (``elementwise``)."""

    def gates(self, carry, proj: tuple[jax.Array, ...], elementwise: Params):
        """The elementwise arithmetic of a step: ``(new carry, y [..., H])``."""

    def recurrent_vjp(self, params: Params, d_carry, d_hp: jax.Array) -> Any:
        """``d_carry + (d hp / d carry)^T d_hp``: the recurrent projection's gradient added into
        a carry-shaped gradient (``project_recurrent`` is affine in the carry, so no point is needed)."""

    def projection_vjp(self, params: Params, x_ni, carries_n, d_proj_n) -> tuple[Params, jax.Array]:
        """``(d params, d x)``: the VJP of both projections over ``N`` rows at once (inputs
        ``x [N, I]``, previous carries, projection gradients as ``projector`` lays them out):
        the fused backward's weight gradients, one matmul each for a dense cell."""


@dataclasses.dataclass(frozen=True)
class StepJacobian:
    r"""The Jacobian of a step's new carry with respect to its previous carry, ``∂c'/∂c``, in the
    structure of a cell whose arithmetic is unit by unit around a few fixed recurrent matrices
    ``M_g [H, H]`` (every built-in cell, and most users')::

        ∂c'_a / ∂c_b = diag(direct[a][b]) + Σ_{g : reads[g] = b} diag(scale[a][g]) M_g

    ``a, b`` index the carry's F fields in its leaf order (the LSTM's ``(h, c)``, coRNN's
    ``(y, z)``; F = 1 when the carry is one array).  ``direct[a][b]`` is the elementwise part
    (``[..., H]``, a scalar, or None for zero: the GRU's ``z``, the LSTM's ``f`` on ``c``),
    ``scale[a][g]`` the elementwise factor of matrix g's rows (None: zero; the gate derivatives
    times what multiplies the gate), ``reads[g]`` the field matrix g multiplies.  A cell with a
    diagonal recurrence (IndRNN, ParaRNN's cells) has no matrices: its Jacobian is exactly
    ``blocks()``.

    ``diagonal()``, ``blocks()`` and ``full()`` assemble it without a forward-mode pass:
    ``diag(J)`` is ``direct + scale * diag(M_g)`` (O(G) elementwise passes), the full J is the
    matrices' rows scaled plus the direct term (O(G·H²) per step, no ``D`` Jacobian-vector products).

    Attributes:
      shape: ``(..., H)``, the batch shape and H of every elementwise entry.
      dtype: their dtype.
    """

    shape: tuple[int, ...]
    dtype: Any
    direct: tuple[tuple[Any, ...], ...]
    scale: tuple[tuple[Any, ...], ...] = ()
    matrices: Any = None
    reads: tuple[int, ...] = ()

    @property
    def fields(self) -> int:
        return len(self.direct)

    @property
    def is_blocks(self) -> bool:
        """True when ``blocks()`` is the whole Jacobian (no recurrent matrices)."""
        return not self.reads

    def _unitwise(self, a: int, b: int) -> jax.Array:
        """``[..., H]``: the diagonal of block (a, b)."""
        total = jnp.zeros(self.shape, self.dtype) if self.direct[a][b] is None else self.direct[a][b]
        for g, field in enumerate(self.reads):
            if field == b and self.scale[a][g] is not None:
                total = total + self.scale[a][g] * jnp.diagonal(self.matrices[g])
        return jnp.broadcast_to(jnp.asarray(total, self.dtype), self.shape)

    def diagonal(self) -> jax.Array:
        """``diag(J)``: ``[..., F*H]``, the fields side by side as ``rnnlab.newton.flatten_carry`` lays them."""
        return jnp.concatenate([self._unitwise(a, a) for a in range(self.fields)], axis=-1)

    def blocks(self) -> jax.Array:
        """Each unit's fields among themselves: ``[..., H, F, F]``, entry ``[i, a, b] = ∂c'_a[i]/∂c_b[i]``
        (``diagonal()`` when F = 1; ParaRNN's 2x2 blocks for an LSTM's ``(h, c)``)."""
        F = self.fields
        return jnp.stack([jnp.stack([self._unitwise(a, b) for b in range(F)], -1) for a in range(F)], -2)

    def full(self) -> jax.Array:
        """The whole ``[..., F*H, F*H]``: block (a, b) is ``diag(direct) + Σ diag(scale) M_g``."""
        H = self.shape[-1]
        eye = jnp.eye(H, dtype=self.dtype)
        rows = []
        for a in range(self.fields):
            row = []
            for b in range(self.fields):
                d = self.direct[a][b]
                if d is None:
                    block = jnp.zeros(self.shape + (H,), self.dtype)
                else:
                    block = jnp.broadcast_to(jnp.asarray(d, self.dtype), self.shape)[..., :, None] * eye
                for g, field in enumerate(self.reads):
                    if field == b and self.scale[a][g] is not None:
                        block = block + self.scale[a][g][..., :, None] * self.matrices[g]
                row.append(jnp.broadcast_to(block, self.shape + (H,)))
            rows.append(jnp.concatenate(row, axis=-1))
        return jnp.concatenate(rows, axis=-2)


class JacobianCell(Cell, Protocol):
    """The opt-in contract of cheap Newton iterations (``rnnlab.newton``): the step together with
    its Jacobian's structure.  Without it the Newton paths take ``jax.jacfwd`` of ``step``: D
    forward-mode passes per iteration (D = the carry's size), where the structure costs about
    one step.  Every built-in sequential cell gives it (``has_jacobian``)."""

    def step_jacobian(self, params: Params, carry, x: jax.Array) -> tuple[Any, jax.Array, StepJacobian]:
        """``(new carry, y, StepJacobian)``: ``step``'s values (bit for bit) and ``∂ new carry / ∂ carry``.
        The scan's hidden perturbation and length mask are not the cell's business: the caller adds
        them (a constant shift leaves J as it is; a padded step's J is the identity)."""


# the paths a three-method cell runs; a FusedCell adds "fused" (first: its default)
STEP_PATHS = ("autodiff", "remat", "newton", "quasi_newton")
SEQUENTIAL_PATHS = ("fused",) + STEP_PATHS
FUSED_METHODS = (
    "project_inputs",
    "project_recurrent",
    "projector",
    "elementwise_params",
    "gates",
    "recurrent_vjp",
    "projection_vjp",
)


def name_of(cell) -> str:
    return type(cell).__name__


def paths(cell) -> tuple[str, ...]:
    """The execution paths ``cell`` runs, its default first: ``cell.paths``, else ``STEP_PATHS``."""
    return tuple(getattr(cell, "paths", STEP_PATHS))


def missing_fused_methods(cell) -> list[str]:
    """The ``FusedCell`` methods ``cell`` lacks (empty: it can run the ``fused`` path)."""
    return [m for m in FUSED_METHODS if not callable(getattr(cell, m, None))]


def is_fused(cell) -> bool:
    return not missing_fused_methods(cell)


def has_jacobian(cell) -> bool:
    """True when ``cell`` gives its step's Jacobian structure (``JacobianCell``)."""
    return callable(getattr(cell, "step_jacobian", None))


def _takes_dtype(method) -> bool:
    parameters = inspect.signature(method).parameters.values()
    return any(p.name == "dtype" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _cast_floats(tree, dtype):
    cast = lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a
    return jax.tree.map(cast, tree)


def init(cell, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
    """``cell.init(key, input_size, dtype)``; a cell whose ``init`` takes no dtype has its params cast."""
    if _takes_dtype(cell.init):
        return cell.init(key, input_size, dtype)
    return _cast_floats(cell.init(key, input_size), dtype)


def initial_carry(cell, batch_shape: tuple[int, ...] = (), dtype=jnp.float32):
    """``cell.initial_carry(batch_shape, dtype)``, cast likewise when it takes no dtype."""
    if _takes_dtype(cell.initial_carry):
        return cell.initial_carry(tuple(batch_shape), dtype)
    return _cast_floats(cell.initial_carry(tuple(batch_shape)), dtype)


def carry_hidden(cell, carry) -> jax.Array:
    """The hidden state ``h [..., H]`` inside a carry (what the hidden perturbation moves and
    the diagnostics read): ``cell.carry_hidden``, else the carry itself when it is one array,
    else its field ``h``."""
    if hasattr(cell, "carry_hidden"):
        return cell.carry_hidden(carry)
    if isinstance(carry, jax.Array | jax.ShapeDtypeStruct) or hasattr(carry, "shape"):
        return carry
    if hasattr(carry, "h"):
        return carry.h
    raise TypeError(
        f"{name_of(cell)}'s carry is a {type(carry).__name__} without a field 'h': give the cell "
        "carry_hidden(carry) and replace_hidden(carry, h) to say which part is the hidden state"
    )


def replace_hidden(cell, carry, h: jax.Array):
    """The carry with its hidden state replaced by ``h`` (defaults as ``carry_hidden``)."""
    if hasattr(cell, "replace_hidden"):
        return cell.replace_hidden(carry, h)
    if isinstance(carry, jax.Array) or hasattr(carry, "shape"):
        return h
    carry_hidden(cell, carry)  # the same one-line error when there is no 'h'
    return carry._replace(h=h)


def hidden_size(cell) -> int:
    """H: ``cell.hidden_size``, else the width of the hidden state of ``initial_carry``."""
    if hasattr(cell, "hidden_size"):
        return cell.hidden_size
    return int(carry_hidden(cell, jax.eval_shape(lambda: initial_carry(cell, ()))).shape[-1])


def param_specs(cell, input_size: int, dtype=jnp.float32) -> dict[str, jax.ShapeDtypeStruct]:
    """The shape of every param (validation and checkpoints read it): ``cell.param_specs``, else
    ``jax.eval_shape`` of ``init``."""
    if hasattr(cell, "param_specs"):
        return cell.param_specs(input_size, dtype)
    specs = jax.eval_shape(lambda: init(cell, jax.random.key(0), input_size, dtype))
    return jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), specs)


def input_size_of(cell, params) -> int | None:
    """The input width ``params`` expect: ``cell.input_size_of``, else None (the inputs' own width;
    ``param_specs`` at that width then checks the params)."""
    return cell.input_size_of(params) if hasattr(cell, "input_size_of") else None


def constrain(cell, params: Params) -> Params:
    """The params projected onto the cell's constraint set after each optimiser step (IndRNN's
    ``|u| <= U_bound``): ``cell.constrain``, else the identity."""
    return cell.constrain(params) if hasattr(cell, "constrain") else params


def recurrent_blocks(cell, params: Params) -> jax.Array | None:
    """The recurrent matrix of each gate, ``[G, H, H]``, for the spectra of ``rnnlab.diagnostics``:
    ``cell.recurrent_blocks``, else None (no fixed recurrent matrix).  It is the matrix that
    multiplies the hidden state inside each gate's pre-activation, NOT the step's Jacobian: for a
    residual cell ``h_t = h_{t-1} + eps * tanh(W h_{t-1} + ...)`` it is ``W``, whose spectrum says
    nothing about the Jacobian ``I + eps * diag(tanh') W`` (use ``rnnlab.diagnostics`` Lyapunov
    exponents or ``jax.jacfwd`` of ``step`` for that)."""
    return cell.recurrent_blocks(params) if hasattr(cell, "recurrent_blocks") else None


class CellDefaults:
    """What sequential and linear cells share.  The carry methods come from two class
    attributes: ``carry_type``, a NamedTuple of ``[..., H]`` fields (None: the carry is ``h``
    itself), and ``hidden_field``, the field that holds ``h`` (the LSTM's ``h``, coRNN's ``y``).
    The input matrix is ``w_ih [rows, I]`` with a bias ``b_ih``, as in every rnnlab cell; no
    constraint; no fixed recurrent matrix."""

    carry_type: ClassVar[type | None] = None
    hidden_field: ClassVar[str] = ""

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> Any:
        zeros = jnp.zeros(tuple(batch_shape) + (self.hidden_size,), dtype)
        return zeros if self.carry_type is None else self.carry_type(*[zeros] * len(self.carry_type._fields))

    def carry_hidden(self, carry) -> jax.Array:
        return carry if self.carry_type is None else getattr(carry, self.hidden_field)

    def replace_hidden(self, carry, h: jax.Array):
        return h if self.carry_type is None else carry._replace(**{self.hidden_field: h})

    def input_size_of(self, params: Params) -> int:
        try:
            return int(params["w_ih"].shape[-1])
        except (KeyError, TypeError, IndexError, AttributeError):
            raise ValueError(f"params must be a dict with 'w_ih' [rows, I] for {type(self).__name__}") from None

    def project_inputs(self, params: Params, x: jax.Array) -> jax.Array:
        """``x W_ih^T + b_ih``."""
        return x @ params["w_ih"].T + params["b_ih"]

    def constrain(self, params: Params) -> Params:
        return params

    def recurrent_blocks(self, params: Params) -> jax.Array | None:
        return None


# class-level switches: ClassVars with these types (a dataclass field of the same name would become
# a per-instance option, and a command-line one: refused when the class is defined)
CLASS_SWITCHES = {
    "sums_projections": bool,
    "num_gates": int,
    "elementwise": tuple,
    "paths": tuple,
    "carry_type": (type, type(None)),
    "hidden_field": str,
}


def check_class_switches(cls) -> None:
    """A subclass's class-level switches are ``ClassVar``s of the right type (``CLASS_SWITCHES``):
    one line naming the class and the switch otherwise."""
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if name in CLASS_SWITCHES and "ClassVar" not in str(annotation):
            raise TypeError(
                f"{cls.__name__}.{name} is a class-level constant, not an option: declare it "
                f"`{name}: ClassVar[...] = ...` (a dataclass field would become a per-cell and command-line option)"
            )
    for name, kind in CLASS_SWITCHES.items():
        value = cls.__dict__.get(name)
        if value is None or isinstance(value, property):
            continue
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 1)):
            want = {bool: "a bool", int: "a positive int", tuple: "a tuple", str: "a str"}.get(
                kind, "a NamedTuple class or None"
            )
            raise TypeError(f"{cls.__name__}.{name} must be {want}, got {value!r}")
    bad = [p for p in cls.__dict__.get("paths", ()) if p not in SEQUENTIAL_PATHS + ("sequential", "associative")]
    if bad:
        raise TypeError(f"{cls.__name__}.paths names unknown path {bad[0]!r}")


@dataclasses.dataclass(frozen=True)
class CellBase(CellDefaults):
    """The ``FusedCell`` plumbing every built-in sequential cell shares, with defaults a new cell
    inherits.  A subclass gives ``init``, ``project_recurrent`` and ``gates`` (and ``project_inputs``
    unless it is ``x W_ih^T + b_ih``); ``recurrent_vjp`` and ``projection_vjp`` default to JAX's VJPs
    of the projections (exact: they are affine).

    Class-level switches (``ClassVar``, checked when a subclass is defined; ``FusedCell``):
      ``sums_projections = True``: ``gates`` receives ``(xp + hp,)``; set False to receive ``(xp, hp)``.
      ``elementwise = ()``: params ``gates`` reads.   ``paths = SEQUENTIAL_PATHS`` (``fused`` first).
      ``carry_type = None``, ``hidden_field = ""``: the carry (``CellDefaults``).
    """

    hidden_size: int

    paths: ClassVar[tuple[str, ...]] = SEQUENTIAL_PATHS
    elementwise: ClassVar[tuple[str, ...]] = ()
    sums_projections: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_class_switches(cls)

    def __post_init__(self):
        check_positive_int("hidden_size", self.hidden_size)

    def param_specs(self, input_size: int, dtype=jnp.float32) -> dict[str, jax.ShapeDtypeStruct]:
        params = jax.eval_shape(lambda: self.init(jax.random.key(0), input_size, dtype))
        return {name: jax.ShapeDtypeStruct(p.shape, p.dtype) for name, p in params.items()}

    def elementwise_params(self, params: Params) -> Params:
        return {name: params[name] for name in self.elementwise}

    def recurrent_vjp(self, params: Params, d_carry, d_hp: jax.Array):
        _, vjp = jax.vjp(lambda c: self.project_recurrent(params, c), d_carry)  # affine: any point will do
        return jax.tree.map(jnp.add, d_carry, vjp(d_hp)[0])

    def projection_vjp(self, params: Params, x_ni, carries_n, d_proj_n):
        _, vjp_inputs = jax.vjp(self.project_inputs, params, x_ni)
        d_params_in, d_x_ni = vjp_inputs(d_proj_n[0])
        _, vjp_recurrent = jax.vjp(lambda p: self.project_recurrent(p, carries_n), params)
        (d_params_rec,) = vjp_recurrent(d_proj_n[-1])
        return jax.tree.map(jnp.add, d_params_in, d_params_rec), d_x_ni

    def projector(self, params: Params):
        def project(x, carry):
            xp, hp = self.project_inputs(params, x), self.project_recurrent(params, carry)
            return (xp + hp,) if self.sums_projections else (xp, hp)

        return project

    def step(self, params: Params, carry, x: jax.Array):
        """``gates(carry, projector(params)(x, carry), elementwise_params(params))``."""
        return self.gates(carry, self.projector(params)(x, carry), self.elementwise_params(params))


@dataclasses.dataclass(frozen=True)
class DenseCell(CellBase):
    """``SequentialCell`` for a dense recurrent matrix: ``hp = h W_hh^T + b_hh``.

    Subclasses give ``gates`` and, unless it is 1, the class-level ``num_gates: ClassVar[int]`` (G).  The numeric init options
    (``recurrent_gain``, ``spectral_radius``, the LSTM's ``forget_bias``) only change the
    values ``init`` returns, never ``step``: a sweep builds the cell with them traced inside
    ``jax.vmap(init)`` and runs every point through one compiled step (see
    ``rnnlab.initializers`` for the init names).
    """

    use_bias: bool = True
    input_init: str = "pytorch"
    recurrent_init: str = "pytorch"
    recurrent_gain: float = 1.0
    spectral_radius: float | None = None
    bias_init: str = "pytorch"

    num_gates: ClassVar[int] = 1

    def __post_init__(self):
        super().__post_init__()
        initializers.check_name("input_init", self.input_init, initializers.INPUT_INITS)
        initializers.check_name("recurrent_init", self.recurrent_init, initializers.RECURRENT_INITS)
        initializers.check_name("bias_init", self.bias_init, initializers.BIAS_INITS)
        # numeric init options may be traced (a sweep vmaps over them); they are checked when concrete
        if self.spectral_radius is not None:
            check_number("spectral_radius", self.spectral_radius, gt=0)
        check_number("recurrent_gain", self.recurrent_gain, gt=0)

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        check_positive_int("input_size", input_size)
        key_ih, key_hh, key_b = jax.random.split(key, 3)
        G, H = self.num_gates, self.hidden_size
        params = {
            "w_ih": initializers.input_weights(self.input_init, key_ih, G, H, input_size, dtype),
            "w_hh": initializers.recurrent_weights(
                self.recurrent_init, key_hh, G, H, dtype, self.recurrent_gain, self.spectral_radius
            ),
        }
        if self.use_bias:
            params["b_ih"], params["b_hh"] = initializers.biases(self.bias_init, key_b, G, H, dtype)
        return params | self.init_elementwise(jax.random.fold_in(key, 2), dtype)

    def init_elementwise(self, key, dtype=jnp.float32) -> Params:
        """The params named in ``elementwise`` (none for most cells)."""
        return {}

    def param_specs(self, input_size: int, dtype=jnp.float32) -> dict[str, jax.ShapeDtypeStruct]:
        GH = self.num_gates * self.hidden_size
        shapes = {"w_ih": (GH, input_size), "w_hh": (GH, self.hidden_size)}
        if self.use_bias:
            shapes.update(b_ih=(GH,), b_hh=(GH,))
        shapes.update({name: (self.hidden_size,) for name in self.elementwise})
        return {name: jax.ShapeDtypeStruct(shape, dtype) for name, shape in shapes.items()}

    def recurrent_blocks(self, params: Params) -> jax.Array:
        """``w_hh`` as ``[G, H, H]`` gate blocks."""
        return params["w_hh"].reshape(self.num_gates, self.hidden_size, self.hidden_size)

    def project_inputs(self, params: Params, x: jax.Array) -> jax.Array:
        """``x W_ih^T + b_ih``: ``[..., I] -> [..., G*H]``."""
        xp = x @ params["w_ih"].T
        return xp + params["b_ih"] if self.use_bias else xp

    def project_recurrent(self, params: Params, carry) -> jax.Array:
        """``h W_hh^T + b_hh`` -> ``[..., G*H]``."""
        hp = self.carry_hidden(carry) @ params["w_hh"].T
        return hp + params["b_hh"] if self.use_bias else hp

    def projector(self, params: Params):
        """The projections with the weights transposed once and, when the gates read ``xp + hp``,
        the two biases summed once: outside a scan's loop, where XLA's CPU backend does not hoist
        them itself (benchmarks/README.md, "The cell contract")."""
        w_ih_t, w_hh_t = params["w_ih"].T, params["w_hh"].T
        b_ih, b_hh = params.get("b_ih"), params.get("b_hh")
        affine = lambda a, w_t, b: a @ w_t if b is None else a @ w_t + b
        if self.sums_projections:
            b_sum = None if b_ih is None else b_ih + b_hh
            return lambda x, carry: (affine(x, w_ih_t, b_sum) + self.carry_hidden(carry) @ w_hh_t,)
        return lambda x, carry: (affine(x, w_ih_t, b_ih), affine(self.carry_hidden(carry), w_hh_t, b_hh))

    def projection_vjp(self, params: Params, x_ni, carries_n, d_proj_n):
        """``dW_ih = dxp^T x``, ``dW_hh = dhp^T h``, ``db = sum(dp)``, ``dx = dxp W_ih``: single matmuls
        over all rows (``dxp = dhp`` when the gates read their sum, and then ``db_hh = db_ih``)."""
        dxp, dhp = d_proj_n[0], d_proj_n[-1]
        d_params = {"w_ih": dxp.T @ x_ni, "w_hh": dhp.T @ self.carry_hidden(carries_n)}
        if self.use_bias:
            d_params["b_ih"] = jnp.sum(dxp, axis=0)
            d_params["b_hh"] = d_params["b_ih"] if self.sums_projections else jnp.sum(dhp, axis=0)
        d_params |= {name: jnp.zeros_like(params[name]) for name in self.elementwise}
        return d_params, dxp @ params["w_ih"]

    def recurrent_vjp(self, params: Params, d_carry, d_hp: jax.Array):
        """``dh += d_hp W_hh`` in the hidden state; the rest of the carry as it is."""
        return self.replace_hidden(d_carry, self.carry_hidden(d_carry) + d_hp @ params["w_hh"])

    def gates(self, carry, proj, elementwise: Params):  # pragma: no cover - abstract
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class ElmanCell(DenseCell):
    r"""Elman's simple recurrent network (SRN), ``torch.nn.RNN``'s cell.

        h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   y_t = h_t

    with ``act`` = ``"tanh"``, ``"relu"``, ``"linear"`` (the identity: a linear RNN, whose
    Lyapunov exponents are the logs of ``|eig(W_hh)|``) or ``"modrelu"``:
    ``act(z) = modrelu(z, b_mod)`` with its own bias ``b_mod [H] ~ U(-0.01, 0.01)``
    (expRNN's draw, lezcano/expRNN ``orthogonal.py``), usually with ``use_bias=False``.

    >>> import jax, jax.numpy as jnp
    >>> cell = ElmanCell(3)
    >>> params = cell.init(jax.random.key(0), input_size=2)
    >>> {k: v.shape for k, v in params.items()}
    {'w_ih': (3, 2), 'w_hh': (3, 3), 'b_ih': (3,), 'b_hh': (3,)}
    >>> h, y = cell.step(params, cell.initial_carry((5,)), jnp.ones((5, 2)))
    >>> bool(jnp.allclose(y, jnp.tanh(jnp.ones(2) @ params["w_ih"].T + params["b_ih"] + params["b_hh"])))
    True
    """

    activation: str = "tanh"

    def __post_init__(self):
        super().__post_init__()
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")

    @property
    def elementwise(self) -> tuple[str, ...]:
        return ("b_mod",) if self.activation == "modrelu" else ()

    def init_elementwise(self, key, dtype=jnp.float32):
        if self.activation != "modrelu":
            return {}
        return {"b_mod": jax.random.uniform(key, (self.hidden_size,), dtype, -0.01, 0.01)}

    def gates(self, h, proj, elementwise):
        (z,) = proj
        h = modrelu(z, elementwise["b_mod"]) if self.activation == "modrelu" else ACTIVATIONS[self.activation](z)
        return h, h

    def step_jacobian(self, params, h, x):
        """``JacobianCell``: ``∂h'/∂h = diag(act'(z)) W_hh``."""
        elem = self.elementwise_params(params)
        proj = self.projector(params)(x, h)
        new_h, y = self.gates(h, proj, elem)
        (z,) = proj
        if self.activation == "tanh":
            slope = 1.0 - new_h**2
        elif self.activation == "relu":
            slope = (z > 0).astype(z.dtype)
        elif self.activation == "linear":
            slope = jnp.ones_like(z)
        else:  # modReLU: sign(z)^2 [|z| + b > 0], as JAX differentiates it (0 at z = 0)
            slope = jnp.sign(z) ** 2 * (jnp.abs(z) + elem["b_mod"] > 0).astype(z.dtype)
        jac = StepJacobian(new_h.shape, new_h.dtype, ((None,),), ((slope,),), self.recurrent_blocks(params), (0,))
        return new_h, y, jac


@dataclasses.dataclass(frozen=True)
class LSTMCell(DenseCell):
    r"""Long short-term memory, ``torch.nn.LSTM``'s cell (gate order i, f, g, o).

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   candidate
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t),   y_t = h_t

    ``W_i* = w_ih[k*H:(k+1)*H]`` for gate k in (i, f, g, o), likewise ``w_hh``,
    ``b_ih``, ``b_hh``.  ``forget_bias``, when set, makes the forget gate's
    total bias ``b_if + b_hf`` equal to it at init (``b_if = forget_bias``,
    ``b_hf = 0``); ``None`` keeps the ``bias_init`` draw, as PyTorch does.
    ``t_max``, when set, is Tallec & Ollivier's (2018) chrono
    initialisation instead: ``b_f ~ log U(1, T_max - 1)`` per unit and
    ``b_i = -b_f`` (the ``b_hh`` parts zero), so the units' forget time
    constants ``~ 1 / (1 - σ(b_f))`` spread over ``1..T_max``.
    Nothing is added in the forward pass: the bias lives in the params.

    >>> import jax, jax.numpy as jnp
    >>> cell = LSTMCell(4, forget_bias=1.0)
    >>> params = cell.init(jax.random.key(0), input_size=3)
    >>> params["w_hh"].shape, float(params["b_ih"][4] + params["b_hh"][4])  # gates i, f, g, o; f's bias
    ((16, 4), 1.0)
    >>> carry, y = cell.step(params, cell.initial_carry((2,)), jnp.ones((2, 3)))
    >>> type(carry).__name__, bool(jnp.all(y == carry.h))
    ('LSTMState', True)
    """

    forget_bias: float | None = None
    t_max: float | None = None
    num_gates: ClassVar[int] = 4
    carry_type: ClassVar[type] = LSTMState
    hidden_field: ClassVar[str] = "h"

    def __post_init__(self):
        super().__post_init__()
        if self.forget_bias is not None and not self.use_bias:
            raise ValueError("forget_bias needs use_bias=True")
        if self.forget_bias is not None and self.t_max is not None:
            raise ValueError("forget_bias and t_max both set the forget-gate bias: choose one")
        if self.forget_bias is not None:
            check_number("forget_bias", self.forget_bias)
        _check_chrono(self)

    def init(self, key, input_size, dtype=jnp.float32):
        params = super().init(key, input_size, dtype)
        H = self.hidden_size
        if self.forget_bias is not None:
            params["b_ih"] = params["b_ih"].at[H : 2 * H].set(self.forget_bias)
            params["b_hh"] = params["b_hh"].at[H : 2 * H].set(0.0)
        if self.t_max is not None:
            b_f = chrono_biases(key, H, self.t_max, dtype)
            params["b_ih"] = params["b_ih"].at[: 2 * H].set(jnp.concatenate([-b_f, b_f]))
            params["b_hh"] = params["b_hh"].at[: 2 * H].set(0.0)
        return params

    def gates(self, carry, proj, elementwise):
        (z,) = proj
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMState(h, c), h

    def step_jacobian(self, params, carry, x):
        """``JacobianCell``: fields ``(h, c)``; the four gate blocks of ``w_hh`` read ``h``, and
        ``∂c'/∂c = σ(f)`` (``∂h'/∂c`` through it) is the direct term."""
        proj = self.projector(params)(x, carry)
        new, y = self.gates(carry, proj, {})
        i, f, g, o = jnp.split(proj[0], 4, axis=-1)
        si, sf, tg, so = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        tc = jnp.tanh(new.c)
        through_c = so * (1.0 - tc**2)  # ∂h'/∂c'
        d_c = (si * (1.0 - si) * tg, sf * (1.0 - sf) * carry.c, si * (1.0 - tg**2), None)  # ∂c'/∂(i, f, g, o)
        d_h = tuple(None if d is None else through_c * d for d in d_c[:3]) + (so * (1.0 - so) * tc,)
        direct = ((None, through_c * sf), (None, sf))
        jac = StepJacobian(new.h.shape, new.h.dtype, direct, (d_h, d_c), self.recurrent_blocks(params), (0, 0, 0, 0))
        return new, y, jac


@dataclasses.dataclass(frozen=True)
class GRUCell(DenseCell):
    r"""Gated recurrent unit in PyTorch's formulation (gate order r, z, n).

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)             reset gate
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)             update gate
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))  candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1},   y_t = h_t

    ``b_hn`` stays inside the reset product, which is why both biases exist.
    ``t_max``, when set, is the chrono initialisation (Tallec & Ollivier
    2018) of the update gate, the GRU's forget gate (``z`` keeps ``h_{t-1}``):
    ``b_z ~ log U(1, T_max - 1)`` in ``b_ih``, ``0`` in ``b_hh``.

    >>> import jax, jax.numpy as jnp
    >>> cell = GRUCell(4)
    >>> params = cell.init(jax.random.key(0), input_size=3)
    >>> h = jnp.full((2, 4), 0.5)
    >>> new_h, _ = cell.step(params, h, jnp.zeros((2, 3)))
    >>> new_h.shape, cell.sums_projections  # r * (W_hn h + b_hn) needs the two projections apart
    ((2, 4), False)
    """

    t_max: float | None = None
    num_gates: ClassVar[int] = 3
    sums_projections: ClassVar[bool] = False  # r * (W_hn h + b_hn) needs hp alone

    def __post_init__(self):
        super().__post_init__()
        _check_chrono(self)

    def init(self, key, input_size, dtype=jnp.float32):
        params = super().init(key, input_size, dtype)
        if self.t_max is not None:
            H = self.hidden_size
            params["b_ih"] = params["b_ih"].at[H : 2 * H].set(chrono_biases(key, H, self.t_max, dtype))
            params["b_hh"] = params["b_hh"].at[H : 2 * H].set(0.0)
        return params

    def gates(self, h, proj, elementwise):
        xp, hp = proj
        x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(hp, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h = (1.0 - z) * n + z * h
        return h, h

    def step_jacobian(self, params, h, x):
        """``JacobianCell``: ``∂h'/∂h = diag(z) + Σ_g diag(s_g) W_hg`` over the gates r, z, n."""
        proj = self.projector(params)(x, h)
        new_h, y = self.gates(h, proj, {})
        x_r, x_z, x_n = jnp.split(proj[0], 3, axis=-1)
        h_r, h_z, h_n = jnp.split(proj[1], 3, axis=-1)
        r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        through_n = (1.0 - z) * (1.0 - n**2)  # ∂h'/∂(n's pre-activation)
        scale = ((through_n * h_n * r * (1.0 - r), (h - n) * z * (1.0 - z), through_n * r),)
        jac = StepJacobian(new_h.shape, new_h.dtype, ((z,),), scale, self.recurrent_blocks(params), (0, 0, 0))
        return new_h, y, jac


@dataclasses.dataclass(frozen=True)
class IndRNNCell(CellBase):
    r"""The independently recurrent network (Li et al. 2018, IndRNN), each unit its own recurrence:

        h_t = relu(W_ih x_t + b_ih + u ⊙ h_{t-1}),   y_t = h_t,   |u| <= U_bound

    params ``w_ih [H, I]``, ``b_ih [H]``, ``u [H]``.  As in the authors' adding-problem code
    (Sunnydreamrain/IndRNN_Theano_Lasagne ``adding/adding.py``): ``W_ih ~ N(0, input_std^2)``
    with ``input_std = 0.001``, ``b_ih = 0``, ``U_bound = mag^(1/t_max)`` with ``mag = 2``, and
    ``u ~ U(0, U_bound)`` (``u_init="uniform"``, their first layer) or
    ``U(mag^(-1/t_max), U_bound)`` (``"last_layer"``, the layer that feeds the output, the
    default with ``t_max``).  ``constrain`` clips ``u`` to ``[-U_bound, U_bound]``, which their
    training loop does before every step.  Without ``t_max`` the bound is 1 and ``u ~ U(0, 1)``
    (their README: "the constraint can always set to [-1, 1]"); ``mag`` or ``u_init="last_layer"``
    given without ``t_max`` would have no effect and is refused.

    >>> import jax, jax.numpy as jnp
    >>> cell = IndRNNCell(4, t_max=100)
    >>> params = cell.init(jax.random.key(0), input_size=2)
    >>> h, y = cell.step(params, cell.initial_carry((3,)), jnp.ones((3, 2)))
    >>> y.shape, bool(jnp.all(y >= 0))
    ((3, 4), True)
    """

    t_max: float | None = None
    mag: float | None = None  # None: the authors' 2 (with t_max)
    u_init: str | None = None  # None: "last_layer" with t_max, "uniform" without
    input_std: float = 0.001

    def __post_init__(self):
        super().__post_init__()
        if self.u_init is not None:
            initializers.check_name("u_init", self.u_init, ("last_layer", "uniform"))
        if self.t_max is not None:
            check_number("IndRNN t_max", self.t_max, ge=1)  # the sequence length
        if self.mag is not None:
            check_number("IndRNN mag", self.mag, gt=1)  # U_bound = mag^(1/t_max)
        check_number("IndRNN input_std", self.input_std, ge=0)
        if self.t_max is None and (self.mag is not None or self.u_init == "last_layer"):
            given = "mag" if self.mag is not None else "u_init='last_layer'"
            raise ValueError(f"IndRNN {given} needs t_max (U_bound = mag^(1/t_max)); without t_max the bound is 1")

    @property
    def u_bound(self):
        return 1.0 if self.t_max is None else (2.0 if self.mag is None else self.mag) ** (1.0 / self.t_max)

    def init(self, key, input_size: int, dtype=jnp.float32):
        check_positive_int("input_size", input_size)
        k_w, k_u = jax.random.split(key)
        H = self.hidden_size
        last_layer = self.u_init == "last_layer" or (self.u_init is None and self.t_max is not None)
        low = 1.0 / self.u_bound if last_layer else 0.0
        return {
            "w_ih": self.input_std * jax.random.normal(k_w, (H, input_size), dtype),
            "b_ih": jnp.zeros((H,), dtype),
            "u": jax.random.uniform(k_u, (H,), dtype, low, self.u_bound),
        }

    def project_recurrent(self, params, h):
        return params["u"] * h

    def gates(self, h, proj, elementwise):
        (z,) = proj
        h = jax.nn.relu(z)
        return h, h

    def step_jacobian(self, params, h, x):
        """``JacobianCell``: diagonal, ``∂h'/∂h = relu'(z) u``."""
        proj = self.projector(params)(x, h)
        new_h, y = self.gates(h, proj, {})
        slope = (proj[0] > 0).astype(new_h.dtype) * params["u"]
        return new_h, y, StepJacobian(new_h.shape, new_h.dtype, ((slope,),))

    def recurrent_blocks(self, params):
        """``diag(u)``: ``[1, H, H]``."""
        return jnp.diag(params["u"])[None]

    def constrain(self, params):
        return params | {"u": jnp.clip(params["u"], -self.u_bound, self.u_bound)}


class CoRNNState(NamedTuple):
    """The coRNN carry: position ``y`` (the output) and velocity ``z``, each ``[..., H]``."""

    y: jax.Array
    z: jax.Array


@dataclasses.dataclass(frozen=True)
class CoRNNCell(CellBase):
    r"""The coupled oscillatory RNN (Rusch & Mishra 2021, coRNN): a second-order ODE
    ``y'' = tanh(W y + 𝒲 y' + V x + b) - γ y - ε y'`` discretised by their IMEX scheme:

        z_t = z_{t-1} + Δt (tanh(V x_t + 𝒲 z_{t-1} + W y_{t-1} + b) - γ y_{t-1} - ε z_{t-1})
        y_t = y_{t-1} + Δt z_t,   output y_t

    params ``w_ih [H, I]`` (V), ``b_ih [H]`` (b), ``w_hh [H, 2H]`` (``[𝒲 | W]``, the columns of
    ``z`` then ``y``): the authors' one ``nn.Linear`` over ``cat(x, z, y)``
    (tk-rusch/coRNN ``adding/model.py``), split by what it multiplies, with its init
    ``U(±1/sqrt(I + 2H))``.  Defaults ``dt = 0.06``, ``gamma = 66``, ``epsilon = 15``: their
    adding-problem script's (``adding/adding_task.py``).

    >>> import jax, jax.numpy as jnp
    >>> cell = CoRNNCell(4)
    >>> params = cell.init(jax.random.key(0), input_size=2)
    >>> carry, y = cell.step(params, cell.initial_carry((3,)), jnp.ones((3, 2)))
    >>> bool(jnp.allclose(y, cell.dt * carry.z))  # from rest, y moves by dt * z
    True
    """

    dt: float = 0.06
    gamma: float = 66.0
    epsilon: float = 15.0
    carry_type: ClassVar[type] = CoRNNState
    hidden_field: ClassVar[str] = "y"

    def __post_init__(self):
        super().__post_init__()
        check_number("coRNN dt", self.dt, gt=0)
        check_number("coRNN gamma", self.gamma, ge=0)
        check_number("coRNN epsilon", self.epsilon, ge=0)

    def init(self, key, input_size: int, dtype=jnp.float32):
        check_positive_int("input_size", input_size)
        H = self.hidden_size
        bound = 1.0 / math.sqrt(input_size + 2 * H)  # torch.nn.Linear(I + 2H, H)
        k_x, k_h, k_b = jax.random.split(key, 3)
        uniform = lambda k, shape: jax.random.uniform(k, shape, dtype, -bound, bound)
        return {"w_ih": uniform(k_x, (H, input_size)), "w_hh": uniform(k_h, (H, 2 * H)), "b_ih": uniform(k_b, (H,))}

    def project_recurrent(self, params, carry):
        return jnp.concatenate([carry.z, carry.y], axis=-1) @ params["w_hh"].T

    def gates(self, carry, proj, elementwise):
        (s,) = proj
        z = carry.z + self.dt * (jnp.tanh(s) - self.gamma * carry.y - self.epsilon * carry.z)
        y = carry.y + self.dt * z
        return CoRNNState(y, z), y

    def step_jacobian(self, params, carry, x):
        """``JacobianCell``: fields ``(y, z)``; ``w_hh``'s two halves read ``z`` and ``y``, and the
        IMEX step's ``-γ y - ε z`` and ``y' = y + dt z'`` are the direct terms."""
        proj = self.projector(params)(x, carry)
        new, y = self.gates(carry, proj, {})
        H, dt = self.hidden_size, self.dt
        slope = 1.0 - jnp.tanh(proj[0]) ** 2
        scale = ((dt * dt * slope,) * 2, (dt * slope,) * 2)
        direct = (
            (1.0 - dt * dt * self.gamma, dt * (1.0 - dt * self.epsilon)),
            (-dt * self.gamma, 1.0 - dt * self.epsilon),
        )
        matrices = jnp.stack([params["w_hh"][:, :H], params["w_hh"][:, H:]])  # [𝒲 | W]: read z, then y
        return new, y, StepJacobian(new.y.shape, new.y.dtype, direct, scale, matrices, (1, 0))


def chrono_biases(key, hidden_size: int, t_max, dtype=jnp.float32) -> jax.Array:
    """``log U(1, T_max - 1)`` per unit: the chrono forget-gate biases (Tallec & Ollivier 2018).
    Drawn from their own stream of ``key``, so every other parameter is the plain init's."""
    u = jax.random.uniform(jax.random.fold_in(key, 0x636872), (hidden_size,), dtype, 1.0, t_max - 1.0)
    return jnp.log(u)


def _check_chrono(cell) -> None:
    t_max = cell.t_max
    if t_max is not None and not cell.use_bias:
        raise ValueError("t_max needs use_bias=True")
    if t_max is not None:
        check_number("t_max", t_max, gt=2)  # the longest dependency, in steps
