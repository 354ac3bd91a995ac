"""Boundary checks with errors that name the problem.

JAX fails silently in places (shapes broadcast, gathers clamp), so every
public entry point checks its inputs here before tracing.  Shape and dtype
checks work on tracers too; value checks (lengths in 1..T) run whenever the
values are concrete, i.e. outside ``jit`` -- inside ``jit`` validate where the
data is made (``rnnlab.data`` does).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


class InputError(ValueError):
    """Bad input from a user -- a flag's value, a data file, a column, a cell -- as opposed to a
    bug.  The message names the culprit; scripts print it in one line (``rnnlab.experiment.cli``)."""


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_positive_int(name: str, value) -> None:
    """A size (``hidden_size``, ...): a positive int, not a bool or a float."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_number(what: str, value, *, ge=None, gt=None) -> None:
    """A numeric hyperparameter (a cell's ``gamma``, ``dt``, ...): a finite real number within its
    bounds (``ge``: >=, ``gt``: >), else ``ValueError`` naming it (``coRNN gamma must be >= 0, a
    finite number, got -1.0``).  A traced value (a sweep vmapping over it) is checked where it is made."""
    if not is_concrete(value):
        return
    bounds = " and ".join(f"{word} {bound:g}" for word, bound in ((">=", ge), (">", gt)) if bound is not None)
    rule = f"{bounds}, a finite number" if bounds else "a finite number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be {rule}, got {value!r}") from None
    if (
        isinstance(value, (bool, np.bool_, complex, np.complexfloating))
        or not np.isfinite(number)
        or (ge is not None and not number >= ge)
        or (gt is not None and not number > gt)
    ):
        raise ValueError(f"{what} must be {rule}, got {value!r}")


def check_token_ids(ids, vocab_size: int, what: str = "token ids") -> np.ndarray:
    """Integer ids must lie in ``0..vocab_size-1``; returns them as a NumPy array."""
    ids = np.asarray(ids)
    if ids.size == 0:  # np.asarray([]) is float64
        return ids.astype(np.int32)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{what} must be integers, got dtype {ids.dtype}")
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _outside_vocabulary(
            what, vocab_size, int(ids[where]), f" at index {where if len(where) > 1 else where[0]}"
        )
    return ids


def _outside_vocabulary(what: str, vocab_size: int, found: int, where: str = "") -> ValueError:
    return ValueError(f"{what} must lie in 0..{vocab_size - 1} (vocabulary size {vocab_size}); found {found}{where}")


def check_embedding_ids(ids, vocab_size: int, what: str = "token ids"):
    """The ids an embedding is about to look up must lie in ``0..vocab_size-1``.

    An embedding lookup would not say: JAX turns an id past the end into NaNs and
    wraps a negative one around.  Concrete ids are checked here; traced ids (inside
    ``jit``) by a host callback on two scalars, whose ``ValueError`` surfaces as a
    ``JaxRuntimeError`` carrying the same message.
    """
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"{what} must be integers, got dtype {ids.dtype}")
    if is_concrete(ids):
        check_token_ids(ids, vocab_size, what)
        return
    bad = (ids < 0) | (ids >= vocab_size)
    first = jnp.argmax(bad.reshape(-1))

    def raise_if_bad(any_bad, bad_id):
        if np.any(any_bad):
            raise _outside_vocabulary(what, vocab_size, int(np.asarray(bad_id)[np.asarray(any_bad)].reshape(-1)[0]))

    jax.debug.callback(raise_if_bad, jnp.any(bad), ids.reshape(-1)[first])


def check_sequence(x, *, time_major: bool, input_size: int | None = None):
    """``x`` must be a float array ``[B, T, I]`` (``[T, B, I]`` when time-major)."""
    layout = "[T, B, I]" if time_major else "[B, T, I]"
    x = jnp.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim != 3:
        raise ValueError(f"inputs must have rank 3 {layout}, got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"inputs must be floating point, got dtype {x.dtype}; "
            "embed integer token ids first (e.g. nn.Embed or jax.nn.one_hot)"
        )
    if input_size is not None and x.shape[-1] != input_size:
        raise ValueError(f"inputs have feature size {x.shape[-1]} but the parameters expect input_size={input_size}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"inputs must have at least one step and one example, got shape {tuple(x.shape)}")
    return x


def check_lengths(lengths, batch_size: int, num_steps: int):
    """``lengths`` must be integers ``[B]`` with every value in ``1..T``."""
    if lengths is None:
        return None
    if not isinstance(lengths, jax.Array):
        lengths = np.asarray(lengths)
    if lengths.shape != (batch_size,):
        raise ValueError(f"lengths must have shape (B,) = ({batch_size},), got {tuple(lengths.shape)}")
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
    if is_concrete(lengths):
        values = np.asarray(lengths)
        bad = (values < 1) | (values > num_steps)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"lengths must lie in 1..T = 1..{num_steps}; lengths[{i}] = {int(values[i])} "
                f"({int(bad.sum())} of {batch_size} out of range)"
            )
    return jnp.asarray(lengths, jnp.int32)


def check_tree_shapes(what: str, tree, expected, *, hint: str = ""):
    """``tree`` must have ``expected``'s structure and leaf shapes (``expected`` has
    ``jax.ShapeDtypeStruct`` leaves, e.g. from ``jax.eval_shape``)."""
    got_def, want_def = jax.tree_util.tree_structure(tree), jax.tree_util.tree_structure(expected)
    if got_def != want_def:
        raise ValueError(f"{what} has structure {got_def}, expected {want_def}{hint}")
    wrong = [
        f"{what}{jax.tree_util.keystr(path)} has shape {tuple(np.shape(leaf))}, expected {tuple(want.shape)}"
        for (path, leaf), want in zip(jax.tree_util.tree_leaves_with_path(tree), jax.tree_util.tree_leaves(expected))
        if tuple(np.shape(leaf)) != tuple(want.shape)
    ]
    if wrong:
        raise ValueError("; ".join(wrong) + hint)
