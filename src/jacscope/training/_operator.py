"""The training Jacobian d theta_T / d theta_0 as a matrix-free linear operator."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jacscope._validation import check_finite, check_losses
from jacscope.operators import AbstractLinearOperator, jacobian_operator
from jacscope.training._linearized_run import linearize_run
from jacscope.training._run import TrainingRun


class TrainingOperatorCost(NamedTuple):
    """What products with the training Jacobian cost, next to training itself.

    A sweep is one pass through the T steps of the run. Byte counts come from
    XLA's memory analysis of the compiled programs (`None` where the backend does
    not offer it): the working memory of one call, temporaries plus outputs (the
    arguments, i.e. the data, params0 and a stored trajectory, are not counted).

    **Fields:**

    - `num_steps`: T, the optimizer steps of the run.
    - `checkpoint_every`: steps per recomputed segment of `rmv`, or `None` when the
      trajectory is stored (linearised once, when the operator was built).
    - `num_checkpoints`: carries (params and optimizer state) an `rmv` keeps,
      `ceil(T / checkpoint_every)`; T when the trajectory is stored.
    - `mv_sweeps`: sweeps per `mv`: 1 (primal and tangent together, or the tangent
      alone on a stored trajectory).
    - `rmv_sweeps`: sweeps per `rmv`: 3 when recomputing (forward to the
      checkpoints, recomputation of each segment, backward), 1 on a stored
      trajectory (backward only).
    - `stored_bytes`: memory held by the stored trajectory (0 when recomputing).
    - `train_bytes`, `mv_bytes`, `rmv_bytes`: working memory of training, of one
      `mv` and of one `rmv`.
    """

    num_steps: int
    checkpoint_every: int | None
    num_checkpoints: int
    mv_sweeps: int
    rmv_sweeps: int
    stored_bytes: int
    train_bytes: int | None
    mv_bytes: int | None
    rmv_bytes: int | None


class TrainingJacobianOperator(AbstractLinearOperator):
    """J = d ravel(theta_T) / d ravel(theta_0), the Jacobian of a whole training run.

    Training is the map theta_0 -> theta_T = step_T o ... o step_1 (theta_0) (the
    optimizer state is carried along and differentiated too), so by the chain
    rule J = J_T ... J_1 with J_t the Jacobian of step t at the point training
    visits. The operator never forms J (P x P for P parameters):

    - `mv(v) = J v` is a Jacobian-vector product through the run (forward mode):
      one sweep over the T steps carrying the primal and the tangent together,
      memory independent of T.
    - `rmv(u) = J^T u` is a vector-Jacobian product (reverse mode). The backward
      sweep needs the trajectory; with `checkpoint_every = c` only the carry at
      the start of each segment of c steps is kept (ceil(T/c) carries) and each
      segment is recomputed from it during the backward sweep, storing the c
      steps' intermediates while it is differentiated (about T/c + c carries,
      least at c = sqrt(T), for one extra forward sweep).
    - With `checkpoint_every=None` the run is linearised once, when the operator
      is built, and the linearisation (every step's intermediates: memory linear
      in T) is kept; then `mv` is a tangent sweep and `rmv` a backward sweep, with
      no primal computation. For a run built from `loss_fn` and `optimizer` each
      step's gradient map is linearised on its own and every Hessian-vector
      product runs in reverse mode, in `mv` too (`LinearizedRun`).
    - `mm(V)` / `rmm(U)` push k vectors through one sweep: the primal is computed
      once and the k tangents (or cotangents) are batched, which turns the
      matrix-vector products inside each step into matrix-matrix products.

    Vectors are flat, in `jax.flatten_util.ravel_pytree(params0)` order; use
    `ravel_input` / `unravel_input` to convert. `cost()` reports what products
    cost in sweeps and memory. Build it with
    `jacscope.training.training_jacobian_operator`.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """

    run: TrainingRun
    primal_in: jax.Array
    primal_out: jax.Array
    losses: jax.Array
    linearized: AbstractLinearOperator | None
    unravel_input: Callable = eqx.field(static=True)
    checkpoint_every: int | None = eqx.field(static=True)
    on_sweep: Callable[[str], Any] | None = eqx.field(static=True)
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def _final(self, x: jax.Array) -> jax.Array:
        """Flat theta_T as a function of flat theta_0."""
        return _flat_final(self.run, self.unravel_input, x)

    def _mv(self, v):
        self._announce("mv")
        return _jvp(self, v)

    def _rmv(self, u):
        self._announce("rmv")
        return _vjp(self, u)

    def _announce(self, kind: str) -> None:
        # Without array arguments the callback is not batched: a vmapped `mm` is one sweep.
        if self.on_sweep is not None:
            jax.debug.callback(functools.partial(self.on_sweep, kind))

    def ravel_input(self, tree: Any) -> jax.Array:
        """Flatten a pytree shaped like params0 into a vector the operator acts on."""
        return ravel_pytree(tree)[0]

    def output(self) -> Any:
        """theta_T, the run's final parameters, as a pytree shaped like params0."""
        return self.unravel_input(self.primal_out)

    def cost(self) -> TrainingOperatorCost:
        """Sweeps and working memory of training, of one `mv` and of one `rmv`.

        Compiles each of the three programs to read XLA's memory analysis (once per
        structure of the run and operator).
        """
        num_steps = self.run.num_steps
        every = self.checkpoint_every
        stored = 0
        if self.linearized is not None:
            stored = sum(
                leaf.nbytes for leaf in jax.tree.leaves(eqx.filter(self.linearized, eqx.is_array))
            )
        vector = jnp.zeros_like(self.primal_in)
        return TrainingOperatorCost(
            num_steps=num_steps,
            checkpoint_every=every,
            num_checkpoints=num_steps if every is None else -(-num_steps // every),
            mv_sweeps=1,
            rmv_sweeps=1 if every is None else 3,
            stored_bytes=int(stored),
            train_bytes=_working_bytes("train", self, vector),
            mv_bytes=_working_bytes("mv", self, vector),
            rmv_bytes=_working_bytes("rmv", self, vector),
        )


def _flat_final(run: TrainingRun, unravel: Callable, x: jax.Array) -> jax.Array:
    return ravel_pytree(run.train(unravel(x))[0])[0]


@eqx.filter_jit
def _jvp(op: TrainingJacobianOperator, v: jax.Array) -> jax.Array:
    v = v.astype(op.primal_in.dtype)
    if op.linearized is not None:
        return op.linearized._mv(v)
    return jax.jvp(op._final, (op.primal_in,), (v,))[1]


@eqx.filter_jit
def _vjp(op: TrainingJacobianOperator, u: jax.Array) -> jax.Array:
    u = u.astype(op.primal_out.dtype)
    if op.linearized is not None:
        return op.linearized._rmv(u)
    segmented = lambda x: ravel_pytree(
        _train_in_segments(op.run, op.unravel_input(x), op.checkpoint_every)
    )[0]
    _, pullback = jax.vjp(segmented, op.primal_in)
    return pullback(u)[0]


@eqx.filter_jit
def _run_once(run: TrainingRun):
    return run.train()


_WORKING_BYTES: dict = {}


def _working_bytes(name: str, op: TrainingJacobianOperator, vector) -> int | None:
    """XLA's temporaries + outputs of `op.<name>(vector)`, compiled once per structure."""
    dynamic, static = eqx.partition((op, vector), eqx.is_array)
    signature = (
        name,
        jax.tree.structure((op, vector)),  # holds the static fields too
        tuple((x.shape, x.dtype) for x in jax.tree.leaves(dynamic)),
    )
    if signature not in _WORKING_BYTES:
        fn = {
            "train": lambda o, x: o._final(x),
            "mv": lambda o, v: o._mv(v),
            "rmv": lambda o, u: o._rmv(u),
        }[name]
        compiled = jax.jit(lambda d: fn(*eqx.combine(d, static))).lower(dynamic).compile()
        try:
            stats = compiled.memory_analysis()
            nbytes = int(stats.temp_size_in_bytes + stats.output_size_in_bytes)
        except Exception:  # not every backend offers memory analysis
            nbytes = None
        _WORKING_BYTES[signature] = nbytes
    return _WORKING_BYTES[signature]


def _train_in_segments(run: TrainingRun, params0: Any, every: int) -> Any:
    """theta_T by an outer scan over segments of `every` steps, each under `jax.checkpoint`.

    Differentiating it in reverse mode keeps one carry per segment and recomputes
    a segment's steps while its part of the backward sweep runs. A last, shorter
    segment takes the remaining T mod `every` steps.
    """

    def body(carry, batch):
        params, state = carry
        params, state, loss = run.step(params, state, batch)
        return (params, state), loss

    @jax.checkpoint
    def segment(carry, batches):
        return jax.lax.scan(body, carry, batches)[0]

    def outer(carry, batches):
        return segment(carry, batches), None

    num_full, remainder = divmod(run.num_steps, every)
    head = jax.tree.map(
        lambda b: b[: num_full * every].reshape(num_full, every, *b.shape[1:]), run.batches
    )
    carry = (params0, run.init_state(params0))
    if num_full:
        carry = jax.lax.scan(outer, carry, head)[0]
    if remainder:
        carry = segment(carry, jax.tree.map(lambda b: b[num_full * every :], run.batches))
    return carry[0]


def _resolve_checkpoint_every(
    checkpoint_every: int | Literal["sqrt"] | None, num_steps: int
) -> int | None:
    if checkpoint_every is None:
        return None
    if checkpoint_every == "sqrt":
        return max(1, math.isqrt(max(num_steps - 1, 0)) + 1)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int | np.integer):
        raise ValueError(
            f"checkpoint_every must be 'sqrt', None or a positive integer, "
            f"received {checkpoint_every!r}"
        )
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, received {checkpoint_every}")
    return int(min(checkpoint_every, max(num_steps, 1)))


def training_jacobian_operator(
    run: TrainingRun,
    *,
    checkpoint_every: int | Literal["sqrt"] | None = "sqrt",
    on_sweep: Callable[[str], Any] | None = None,
) -> TrainingJacobianOperator:
    """The Jacobian of a whole training run w.r.t. its initial parameters, never formed.

    J = d theta_T / d theta_0 is P x P for P parameters; this returns it as a
    `jacscope` linear operator whose `mv` is a JVP and whose `rmv` is a VJP through
    all T steps (see `TrainingJacobianOperator`), so that every function of
    `jacscope.linalg` (`svd_topk` of `J` or of `J - jacscope.identity(P)`,
    `spectral_density`, `frobenius_sq`, `trace`, ...) works on runs far too large
    for the dense Jacobian.

    **Arguments:**

    - `run`: a `jacscope.training.TrainingRun`.
    - `checkpoint_every`: the memory/compute trade-off. `"sqrt"` (default): `rmv`
      keeps a carry every c = ceil(sqrt(T)) steps and recomputes the steps between
      them during the backward sweep, about 2 sqrt(T) carries in memory for one
      extra forward sweep; an integer sets c (`1` keeps every carry and
      recomputes only inside each step). `None`: store the trajectory, i.e.
      linearise the run once now and keep every step's intermediates (memory
      linear in T, often gigabytes), after which `mv` and `rmv` skip the primal
      computation. `op.cost()` reports sweeps and bytes either way.
    - `on_sweep`: called on the host as `on_sweep("mv")` or `on_sweep("rmv")` each
      time a product sweeps through training, also inside `jax.jit`; a batched
      `mm`/`rmm` is one sweep (one call per chunk). For progress and cost accounting.

    The run is trained once when the operator is built, to check it and to keep
    theta_T.

    **Returns:** a `TrainingJacobianOperator` of shape `(P, P)`; vectors are in
    `ravel_pytree(run.params0)` order, `op.output()` is theta_T and `op.losses` the
    loss of every step.

    **Raises:** `ValueError` naming the leaf if params0 or theta_T is not finite;
    `FloatingPointError` naming the first step whose loss is NaN or inf.

    ```python
    op = jacscope.training.training_jacobian_operator(run)
    U, S, Vt, info = jacscope.linalg.svd_topk(op - jacscope.identity(op.shape[0]), 32, key=key)
    ```

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    if not isinstance(run, TrainingRun):
        raise TypeError(f"run must be a jacscope.training.TrainingRun, received {type(run)}")
    check_finite(run.params0, "params0")
    x0, unravel = ravel_pytree(run.params0)
    if x0.size == 0 or not jnp.issubdtype(x0.dtype, jnp.inexact):
        raise ValueError("params0 has no floating-point entries to differentiate")
    every = _resolve_checkpoint_every(checkpoint_every, run.num_steps)
    theta_T, losses = _run_once(run)
    check_losses(
        losses, "the training Jacobian is undefined; lower the learning rate or check the data"
    )
    check_finite(theta_T, "theta_T (the parameters after training)")
    x_final = ravel_pytree(theta_T)[0]
    if x_final.shape != x0.shape:
        raise ValueError(
            f"the step changes the parameters' size: params0 flattens to {x0.shape[0]} "
            f"entries, theta_T to {x_final.shape[0]}"
        )
    linearized = None
    if every is None and run.loss_fn is not None:
        linearized = linearize_run(run)
    elif every is None:
        linearized = jacobian_operator(functools.partial(_flat_final, run, unravel), x0)
    return TrainingJacobianOperator(
        run=run,
        primal_in=x0,
        primal_out=x_final,
        losses=losses,
        linearized=linearized,
        unravel_input=unravel,
        checkpoint_every=every,
        on_sweep=on_sweep,
        shape=(int(x0.size), int(x0.size)),
        dtype=x0.dtype,
    )
