"""Gradient diagnostics: how much of the loss's gradient reaches step t?

Backpropagation through time multiplies the gradient by one Jacobian per step,

    dL/dh_t = (dh_{t+1}/dh_t)^T dL/dh_{t+1},      dh_T/dh_t = prod_{k=t+1..T} dh_k/dh_{k-1},

so its norm shrinks (vanishes) or grows (explodes) geometrically with the
distance T - t unless the Jacobians stay near norm 1 (Hochreiter 1991;
Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013).  For the
Elman cell ``dh_k/dh_{k-1} = diag(1 - h_k^2) W_hh``, so a largest singular
value of ``W_hh`` below 1 is sufficient for vanishing (tanh' <= 1).

Pascanu, Mikolov & Bengio's bound follows: ``||dh_T/dh_{T-k}||_2 <= lambda_1(W_hh)^k``
for a tanh or ReLU RNN (``|f'| <= 1``); ``pascanu_bound_ratio`` checks it.

The norms take ``fn(eps)``, where ``eps [B, T, H]`` is a perturbation added to
every hidden state inside the scan (``hidden_perturbation=``), and
differentiate at ``eps = 0``: every t from one backward pass (or one per
hidden unit for the Jacobian), no Python loop over time.  Everything here
takes the pure layer (``rnnlab.RNN`` or a wrapper of it) and its params.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from rnnlab import cells
from rnnlab.metrics import over_seeds


def hidden_gradient_norms(loss_of_eps, eps_shape_bth, dtype=None) -> jax.Array:
    """``||dL/dh_t||`` for every example and step: ``[B, T]``.

    ``loss_of_eps(eps [B, T, H]) -> scalar``; for per-example norms the loss
    should be a sum (or mean) of per-example losses.

    >>> import jax, jax.numpy as jnp
    >>> from rnnlab import RNN, ElmanCell
    >>> layer = RNN(ElmanCell(8))
    >>> params = layer.init(jax.random.key(0), input_size=2)
    >>> x = jax.random.normal(jax.random.key(1), (4, 30, 2))
    >>> loss = lambda eps: jnp.sum(layer.apply(params, x, hidden_perturbation=eps[None])[0][:, -1] ** 2)
    >>> norms = hidden_gradient_norms(loss, (4, 30, 8))
    >>> norms.shape, bool(norms[:, 0].mean() < 1e-3 * norms[:, -1].mean())   # vanished over 30 steps
    ((4, 30), True)
    """
    grad_bth = jax.grad(loss_of_eps)(jnp.zeros(eps_shape_bth, dtype))
    return jnp.linalg.norm(grad_bth, axis=-1)


def hidden_jacobian_norms(final_hidden_of_eps, eps_shape_th, dtype=None) -> jax.Array:
    """Spectral norm ``||dh_T/dh_t||_2`` for every step of one sequence: ``[T]``.

    ``final_hidden_of_eps(eps [T, H]) -> h_T [H]``; one backward pass per unit of ``h_T``.
    """
    jac_hth = jax.jacrev(final_hidden_of_eps)(jnp.zeros(eps_shape_th, dtype))  # [H_out, T, H_in]
    return jax.vmap(spectral_norm)(jnp.moveaxis(jac_hth, 1, 0))


def spectral_norm(m_ij, squarings: int = 12) -> jax.Array:
    """``||M||_2``, the largest singular value, in plain matmuls (no LAPACK).

    With ``G = M^T M / trace``, repeated squaring ``G <- G^2 / trace(G^2)`` converges to the
    projector onto G's top eigenspace (the second eigenvalue's share falls as
    ``(s_2/s_1)^(2^(k+1))``), and the Rayleigh quotient of its largest column gives
    ``s_1^2``, exactly when the top singular value is repeated.  With k = 12 squarings
    the relative error is at most ``max_g g e^{-2^14 g} ~ 2e-5`` on ``s_1^2`` (gap ``g``
    between ``s_1^2`` and ``s_2^2``), and rounding-level once the gap exceeds 0.3%.  ``M`` is scaled by
    ``max|M|`` first, so a vanished Jacobian (1e-200) neither underflows nor loses digits.
    (``jnp.linalg.norm(ord=2)`` calls LAPACK's SVD, which hung when several XLA CPU devices
    ran it at once, as a sweep sharded over devices does.)

    >>> import jax.numpy as jnp
    >>> round(float(spectral_norm(jnp.array([[3.0, 0.0], [4.0, 5.0]]))), 4)   # sqrt(45)
    6.7082
    """
    scale = jnp.max(jnp.abs(m_ij))
    m_ij = m_ij / jnp.where(scale > 0, scale, 1)
    gram = m_ij.T @ m_ij
    p = gram / jnp.maximum(jnp.trace(gram), jnp.finfo(gram.dtype).tiny)

    def square(p, _):
        p = p @ p
        return p / jnp.maximum(jnp.trace(p), jnp.finfo(p.dtype).tiny), None

    p, _ = jax.lax.scan(square, p, None, length=squarings)
    v = p[:, jnp.argmax(jnp.sum(p * p, axis=0))]
    top = (v @ gram @ v) / jnp.maximum(v @ v, jnp.finfo(v.dtype).tiny)
    return scale * jnp.sqrt(jnp.maximum(top, 0))


def gradient_profile(layer, params, loss_of_outputs, x_bti, lengths_b=None, *, jacobian: bool = True):
    """``(grad_t, jac_t)`` of a one-layer forward ``layer``: ``||dL/dh_t||`` averaged over the
    batch ``[T]``, and ``||dh_T/dh_t||_2`` for the first sequence ``[T]`` (zeros if not ``jacobian``).

    ``loss_of_outputs(outputs_bth) -> scalar`` should sum per-example losses, so that each
    example gets its own gradient.  With ``lengths_b`` (all equal: a sweep pads shorter
    sequences to share one program) "last step" is step ``lengths - 1`` and the curves are
    zero past it.  Pure and jittable; ``jax.vmap`` it over seeds or sweep points.
    """
    check_layer("gradient_profile", layer, one_forward_layer=True)
    B, T, _ = x_bti.shape
    H = cells.hidden_size(layer.cell)

    def loss(eps_bth):
        return loss_of_outputs(layer.apply(params, x_bti, lengths_b, hidden_perturbation=eps_bth[None])[0])

    grad_t = jnp.mean(hidden_gradient_norms(loss, (B, T, H), x_bti.dtype), axis=0)
    if not jacobian:
        return grad_t, jnp.zeros_like(grad_t)

    def final_hidden(eps_th):
        first = None if lengths_b is None else lengths_b[:1]
        _, final = layer.apply(params, x_bti[:1], first, hidden_perturbation=eps_th[None, None])
        return cells.carry_hidden(layer.cell, final)[0, 0]

    return grad_t, hidden_jacobian_norms(final_hidden, (T, H), x_bti.dtype)


def gate_spectra(layer, params_s) -> tuple[np.ndarray, np.ndarray]:
    """Spectral radius and largest singular value of each recurrent block of layer 0's cell
    (``cell.recurrent_blocks``, as the cells compute: ``layer.materialize``), for each of ``S``
    stacked params: two ``[S, G]`` arrays, NaN for a point whose params are not finite (diverged).

    The blocks are the gates' ``W_hh`` for a dense cell, ``diag(u)`` for IndRNN and ``diag(λ)``
    for the LRU (radius and largest singular value are then both ``max |λ|``).  A cell without a
    fixed recurrent matrix (minGRU, minLSTM: coefficients from the input; coRNN) gives ``[S, 1]`` NaN.
    These are the matrices inside the gates, not the step's Jacobian: for a residual cell
    (``h + eps * tanh(W h + ...)``) the blocks are ``W``, and the Lyapunov exponents, not these
    spectra, say whether its gradients vanish (``cells.recurrent_blocks``).

    >>> import jax
    >>> from rnnlab import RNN, ElmanCell
    >>> layer = RNN(ElmanCell(16, recurrent_init="orthogonal"))
    >>> params_s = jax.vmap(lambda k: layer.init(k, 2))(jax.random.split(jax.random.key(0), 3))
    >>> radii, singular = gate_spectra(layer, params_s)
    >>> radii.shape, bool(abs(singular - 1).max() < 1e-5)   # orthogonal: every singular value is 1
    ((3, 1), True)
    """
    check_layer("gate_spectra", layer)
    blocks_of = lambda p: cells.recurrent_blocks(layer.cell, layer.materialize(p)["l0"]["fwd"])
    S = len(jax.tree.leaves(params_s)[0])
    if jax.eval_shape(blocks_of, jax.tree.map(lambda a: a[0], params_s)) is None:
        return np.full((S, 1), np.nan), np.full((S, 1), np.nan)
    blocks_sg = np.asarray(jax.vmap(blocks_of)(params_s))
    blocks_sg = blocks_sg.astype(np.complex128 if np.iscomplexobj(blocks_sg) else np.float64)
    radii, singular = np.full(blocks_sg.shape[:2], np.nan), np.full(blocks_sg.shape[:2], np.nan)
    for s, blocks in enumerate(blocks_sg):
        if np.all(np.isfinite(blocks)):
            for g, block in enumerate(blocks):
                radii[s, g], singular[s, g] = np.max(np.abs(np.linalg.eigvals(block))), np.linalg.norm(block, 2)
    return radii, singular


def check_layer(what: str, layer, *, one_forward_layer: bool = False) -> None:
    """``layer`` must be a pure layer (``rnnlab.RNN`` or a wrapper of one, e.g. ``zoo.make_layer``),
    one forward layer when ``one_forward_layer``: one line saying what ``what`` takes otherwise."""
    if not all(hasattr(layer, a) for a in ("apply", "cell", "materialize")):
        kind = type(layer).__name__
        hint = f": wrap it, rnnlab.RNN({kind}(...))" if hasattr(layer, "step") else ""
        raise TypeError(f"{what} takes a layer (rnnlab.RNN or zoo.make_layer) and its params, got a {kind}{hint}")
    if one_forward_layer and (layer.num_layers != 1 or layer.bidirectional or layer.reverse):
        raise ValueError(
            f"{what} takes a one-layer forward layer (its hidden states are one sequence of h_t), got "
            f"num_layers={layer.num_layers}, bidirectional={layer.bidirectional}, reverse={layer.reverse}"
        )


def pascanu_bound_ratio(jac_t, largest_singular_value: float) -> float:
    """``max_{k >= 1} ||dh_T/dh_{T-k}||_2 / lambda_1^k``: at most 1 for a tanh or ReLU RNN:
    the Jacobian over k steps is a product of k factors ``diag(f') W_hh`` with ``|f'| <= 1``
    (Pascanu, Mikolov & Bengio 2013).  (k = 0 is the identity.)"""
    jac_k = by_distance(np.asarray(jac_t, np.float64))
    return float(np.max(jac_k[1:] / largest_singular_value ** np.arange(1, len(jac_k))))


def lyapunov_exponents(cell, params, x_ti, length=None, *, count: int = 4) -> jax.Array:
    """The ``count`` leading Lyapunov exponents, per step, of the tangent dynamics of one sequence.

    Along the model's own trajectory ``c_t = step(c_{t-1}, x_t)`` (from zeros), the tangent
    map is ``J_t = dc_t/dc_{t-1}`` (the whole carry: ``(h, c)`` for an LSTM).  The QR method
    (Benettin et al. 1980) pushes an orthonormal frame through the maps and re-orthonormalises
    it each step, ``J_t Q_{t-1} = Q_t R_t``; then ``lambda_i = (1/T) sum_t ln |R_t[i, i]|``,
    sorted.  ``||dh_T/dh_t||`` grows like ``exp(lambda_1 (T - t))``, so ``exp(lambda_1)`` is
    the factor per step by which a gradient vanishes (``lambda_1 < 0``) or explodes.  For a
    linear RNN, ``lambda_i = ln |eig_i(W_hh)|``.  ``length``: the valid steps (default T).
    QR by Gram-Schmidt in matmuls (no LAPACK, as ``spectral_norm``); jittable, vmappable.

    A linear RNN's exponents are the logs of its eigenvalues' moduli:

    >>> import jax.numpy as jnp
    >>> from rnnlab import ElmanCell
    >>> cell = ElmanCell(2, activation="linear", use_bias=False)
    >>> params = {"w_ih": jnp.zeros((2, 1)), "w_hh": jnp.diag(jnp.array([0.5, 0.9]))}
    >>> exps = lyapunov_exponents(cell, params, jnp.zeros((2000, 1)), count=2)
    >>> [round(float(e), 2) for e in exps], [round(float(jnp.log(v)), 2) for v in (0.9, 0.5)]
    ([-0.11, -0.69], [-0.11, -0.69])
    """
    num_steps = x_ti.shape[0]
    length = num_steps if length is None else length
    flat0, unravel = ravel_pytree(cells.initial_carry(cell, (), x_ti.dtype))
    # a random orthonormal start (fixed key): a coordinate frame can sit far from the slow directions
    frame_dk = _gram_schmidt(jax.random.normal(jax.random.key(0), (flat0.size, count), x_ti.dtype))[0]

    def step(state, inputs):
        flat, q_dk, log_r_k = state
        t, x_i = inputs
        advance = lambda v: ravel_pytree(cell.step(params, unravel(v), x_i)[0])[0]
        new_flat, tangent = jax.linearize(advance, flat)
        q_new_dk, r_k = _gram_schmidt(jax.vmap(tangent, in_axes=1, out_axes=1)(q_dk))
        valid = t < length  # past the sequence's length: nothing moves
        keep = lambda new, old: jnp.where(valid, new, old)
        return (keep(new_flat, flat), keep(q_new_dk, q_dk), log_r_k + jnp.where(valid, jnp.log(r_k), 0.0)), None

    (_, _, log_r_k), _ = jax.lax.scan(
        step, (flat0, frame_dk, jnp.zeros(count, x_ti.dtype)), (jnp.arange(num_steps), x_ti)
    )
    return jnp.sort(log_r_k / length)[::-1]


def finite_time_exponent(cell, params, x_ti, length=None) -> jax.Array:
    r"""The largest finite-time Lyapunov exponent of one sequence, exactly:
    ``lambda_1(T) = (1/T) ln ||J_T ... J_1||_2`` (``J_t = dc_t/dc_{t-1}`` along the model's own
    trajectory from zeros, as ``lyapunov_exponents``).

    ``lyapunov_exponents`` follows a few directions from a random start frame; its estimate of
    ``lambda_1`` is short by up to ``ln(D) / (2T)`` when the frame has not turned onto the top
    direction within T steps, which slow dynamics with nearly equal rates (an LRU ring near 1)
    never do.  Here no direction is chosen: every coordinate vector ``e_j`` is pushed through the
    maps, each column renormalised every step with its log-norm ``s_j`` kept, so the product is
    ``P = [exp(s_1) u_1, ..., exp(s_D) u_D]`` with unit ``u_j``, and
    ``ln ||P||_2 = max_j s_j + ln ||U diag(exp(s - max s))||_2``: no overflow, no underflow
    that matters (the last norm by ``spectral_norm``, relative error at most 2e-5 on ``s_1^2``).
    D pushes per step (D the carry's size).  For a linear cell with a normal
    ``W`` it is ``ln max |eig(W)|``:

    >>> import jax.numpy as jnp
    >>> from rnnlab import ElmanCell
    >>> cell = ElmanCell(2, activation="linear", use_bias=False)
    >>> params = {"w_ih": jnp.zeros((2, 1)), "w_hh": jnp.diag(jnp.array([0.5, 0.999]))}
    >>> round(float(finite_time_exponent(cell, params, jnp.zeros((300, 1)))), 5), round(float(jnp.log(0.999)), 5)
    (-0.001, -0.001)
    """
    num_steps = x_ti.shape[0]
    length = num_steps if length is None else length
    flat0, unravel = ravel_pytree(cells.initial_carry(cell, (), x_ti.dtype))
    tiny = jnp.finfo(x_ti.dtype).tiny

    def step(state, inputs):
        flat, u_dd, log_s_d = state
        t, x_i = inputs
        advance = lambda v: ravel_pytree(cell.step(params, unravel(v), x_i)[0])[0]
        new_flat, tangent = jax.linearize(advance, flat)
        pushed_dd = jax.vmap(tangent, in_axes=1, out_axes=1)(u_dd)
        norms_d = jnp.maximum(jnp.linalg.norm(pushed_dd, axis=0), tiny)
        valid = t < length  # past the sequence's length: nothing moves
        keep = lambda new, old: jnp.where(valid, new, old)
        return (keep(new_flat, flat), keep(pushed_dd / norms_d, u_dd), keep(log_s_d + jnp.log(norms_d), log_s_d)), None

    eye = jnp.eye(flat0.size, dtype=x_ti.dtype)
    state0 = (flat0, eye, jnp.zeros(flat0.size, x_ti.dtype))
    (_, u_dd, log_s_d), _ = jax.lax.scan(step, state0, (jnp.arange(num_steps), x_ti))
    top = jnp.max(log_s_d)
    scaled_dd = u_dd * jnp.exp(log_s_d - top)
    return (top + jnp.log(spectral_norm(scaled_dd))) / length  # in matmuls: LAPACK's SVD hangs sharded sweeps


def layer_finite_time_exponent(layer, params, x_bti, lengths_b=None) -> jax.Array:
    """``finite_time_exponent`` of a one-layer forward ``layer``'s cell along each sequence of the
    batch, averaged over the batch: a scalar."""
    check_layer("layer_finite_time_exponent", layer, one_forward_layer=True)
    cell_params = layer.materialize(params)["l0"]["fwd"]
    lengths_b = jnp.full(x_bti.shape[0], x_bti.shape[1]) if lengths_b is None else lengths_b
    return jnp.mean(jax.vmap(lambda x_ti, n: finite_time_exponent(layer.cell, cell_params, x_ti, n))(x_bti, lengths_b))


def layer_lyapunov_exponents(layer, params, x_bti, lengths_b=None, *, count: int = 4) -> jax.Array:
    """``lyapunov_exponents`` of a one-layer forward ``layer``'s cell (as it computes: ``layer.materialize``)
    along each sequence of the batch, averaged over the batch: ``[count]``."""
    check_layer("layer_lyapunov_exponents", layer, one_forward_layer=True)
    cell_params = layer.materialize(params)["l0"]["fwd"]
    lengths_b = jnp.full(x_bti.shape[0], x_bti.shape[1]) if lengths_b is None else lengths_b
    exponents_bk = jax.vmap(lambda x_ti, n: lyapunov_exponents(layer.cell, cell_params, x_ti, n, count=count))(
        x_bti, lengths_b
    )
    return jnp.mean(exponents_bk, axis=0)


def _gram_schmidt(z_dk):
    """``Z = Q R`` for a few columns: ``(Q [D, K] orthonormal, |diag R| [K])`` (modified Gram-Schmidt)."""
    tiny = jnp.finfo(z_dk.dtype).tiny
    columns, norms = [], []
    for k in range(z_dk.shape[1]):
        v = z_dk[:, k]
        for q in columns:
            v = v - (q @ v) * q
        norm = jnp.sqrt(v @ v)
        columns.append(v / jnp.maximum(norm, tiny))
        norms.append(jnp.maximum(norm, tiny))
    return jnp.stack(columns, axis=1), jnp.stack(norms)


def decay_rate(norms_t) -> float:
    """The least-squares slope of ``ln ||dL/dh_t||`` against the distance ``T - 1 - t``, per step
    (over the distances where the norm is positive): the rate ``lambda_1`` predicts."""
    norms_d = by_distance(np.asarray(norms_t, np.float64))
    d = np.flatnonzero(norms_d > 0)
    if len(d) < 2 or not np.all(np.isfinite(norms_d)):
        return float("nan")
    return float(np.polyfit(d, np.log(norms_d[d]), 1)[0])


def by_distance(values_xt) -> np.ndarray:
    """Reorder the time axis (last) to distance from the end: index d is step T - 1 - d."""
    return np.asarray(values_xt)[..., ::-1]


def summarize(curves_st) -> dict:
    """Curves over seeds ``[S, T]`` in time order -> ``{"distance", "median", "q25", "q75",
    "diverged", "diverged_seeds"}`` by distance from the end (``rnnlab.metrics.over_seeds``)."""
    curves_sd = by_distance(np.asarray(curves_st, np.float64))
    return {"distance": list(range(curves_sd.shape[-1])), **over_seeds(curves_sd, per_seed=False)}


PROFILE_KEYS = (
    "gradient_norms",
    "jacobian_norms",
    "ratios",
    "spectral_radii",
    "largest_singular_values",
    "lyapunov",
    "pascanu_bound",
)


def profile_results(measured: dict, *, jacobian: bool = True) -> dict:
    """Measurements of one model over seeds, phase by phase, summarised: ``{key: {phase: ...}}``
    for each of ``PROFILE_KEYS`` (the main job's results.json).

    ``measured[phase]`` holds ``"grad"`` and ``"jac"`` ``[S, T]`` (``gradient_profile``), the
    spectra ``"radii"``, ``"sv"`` ``[S, G]`` (``gate_spectra``), ``"lyap"`` ``[S, K]`` and, optionally,
    ``"finite_time"`` ``[S]`` (``finite_time_exponent``).  The
    Lyapunov entry sets the exponent beside the gradient's fitted decay rate; Pascanu's bound is
    checked where there is one recurrent block with a largest singular value (an Elman cell,
    IndRNN, the LRU), diverged seeds left out."""
    out = {key: {} for key in PROFILE_KEYS}
    for phase, m in measured.items():
        out["gradient_norms"][phase] = summarize(m["grad"])
        out["ratios"][phase] = over_seeds([decay_ratio(g) for g in m["grad"]])
        out["spectral_radii"][phase] = over_seeds(m["radii"])["median"]
        out["largest_singular_values"][phase] = over_seeds(m["sv"])["median"]
        decay = [decay_rate(g) for g in m["grad"]]  # ln ||dL/dh_t|| per step back; lambda_1 predicts it
        lyap = {"exponents": over_seeds(m["lyap"])["median"], "gradient_decay": over_seeds(decay)["median"]}
        if "finite_time" in m:  # the exact lambda_1(T) (finite_time_exponent), beside the QR estimate
            lyap["finite_time_exponent"] = over_seeds(m["finite_time"])["median"]
        out["lyapunov"][phase] = {"exponent": lyap["exponents"][0], **lyap}
        if jacobian:
            out["jacobian_norms"][phase] = summarize(m["jac"])
            if m["sv"].shape[1] == 1 and np.isfinite(m["sv"]).any():
                bound = [pascanu_bound_ratio(j, sv[0]) for j, sv in zip(m["jac"], m["sv"])]
                out["pascanu_bound"][phase] = {"max_jacobian_over_bound": float(np.nanmax(bound))}
    return out


def decay_ratio(norms_t) -> float:
    """``||dL/dh_1|| / ||dL/dh_T||``: how much of the gradient at the last step reaches the first."""
    norms_t = np.asarray(norms_t, np.float64)
    return float(norms_t[0] / norms_t[-1]) if norms_t[-1] > 0 else float("nan")
