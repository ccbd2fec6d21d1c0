"""Lazy regularisation: a penalty on every k-th training step only, k times as strong."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp

from jacscope._validation import check_count


def lazy_penalty(penalty: Callable, every: int) -> Callable:
    r"""`penalty`, evaluated on every `every`-th step only and `every` times as strong.

    Returns `lazy(step, *args, **kwargs)`, which is

        every * penalty(*args, **kwargs)    if step % every == 0,
        0                                   otherwise,

    so that over any `every` consecutive steps it adds up to what the penalty itself
    adds up to over those steps, at fixed parameters ("lazy regularisation", Karras et
    al. 2020, who apply their R1 penalty every 16th step). The choice is made by
    `jax.lax.cond`, and in reverse mode the penalty's value and gradient are computed
    together inside it (a custom VJP), so on the other steps neither is computed: a
    penalty whose gradient costs c times a plain step costs about 1 + (c - 1) / every
    on average. The gradient flows to every floating-point array among the arguments
    and to arrays the penalty closes over; forward-mode differentiation is not
    supported. (Under `jax.vmap` over a batched `step`, `cond` evaluates both branches
    and nothing is saved.)

    ```python
    frobenius = lazy_penalty(jacobian_frobenius_penalty, every=4)

    def loss(params, batch, key, step):
        ce = cross_entropy(mlp_apply(params, batch["x"]), batch["y"])
        return ce + 0.01 * frobenius(step, mlp_apply, params, batch["x"], key)
    ```

    **Arguments:**

    - `penalty`: any function returning a scalar (`jacobian_frobenius_penalty`,
      `nuclear_norm_penalty`, a user's own); its arguments are passed through.
    - `every`: k >= 1, the period in steps.

    With `every=1` the penalty is called directly, on every step.

    **Returns:** `lazy(step, *args, **kwargs) -> scalar`, `jit`-able and differentiable
    like `penalty`; `step` is an integer (traced or not).

    Citation: Karras, Laine, Aittala, Hellsten, Lehtinen & Aila, "Analyzing and Improving
    the Image Quality of StyleGAN", arXiv 1912.04958.
    """
    check_count(every, "every", "lazy_penalty")

    def lazy(step, *args, **kwargs):
        step = jnp.asarray(step)
        if step.shape != () or not jnp.issubdtype(step.dtype, jnp.integer):
            raise ValueError(
                f"lazy_penalty: step must be an integer scalar, received shape {step.shape} "
                f"and dtype {step.dtype}"
            )
        shape = jax.eval_shape(lambda: penalty(*args, **kwargs))
        if getattr(shape, "shape", None) != ():
            raise ValueError(
                f"lazy_penalty: the penalty must return a scalar array, it returns {shape}"
            )
        if every == 1:
            return penalty(*args, **kwargs)
        dynamic, static = eqx.partition((args, kwargs), eqx.is_inexact_array)

        def value(dynamic):
            args, kwargs = eqx.combine(dynamic, static)
            return penalty(*args, **kwargs)

        # arrays that `penalty` or a function among `args` closes over become inputs too
        value, consts = jax.closure_convert(value, dynamic)
        return _on_every(value, step, every, shape.dtype, dynamic, consts)

    return lazy


@partial(jax.custom_vjp, nondiff_argnums=(0, 2, 3))
def _on_every(value: Callable, step, every: int, dtype, dynamic, consts):
    """`every * value(dynamic, *consts)` when `step % every == 0`, else 0."""
    return jax.lax.cond(
        step % every == 0,
        lambda: every * value(dynamic, *consts),
        lambda: jnp.zeros((), dtype),
    )


def _on_every_fwd(value, step, every, dtype, dynamic, consts):
    # The value and its gradient are computed together inside one `cond`: differentiating
    # through a `cond` instead would carry the penalty's residuals out of it on every step.
    def penalised():
        val, grads = jax.value_and_grad(lambda d, c: value(d, *c), argnums=(0, 1))(dynamic, consts)
        return every * val, jax.tree.map(lambda g: every * g, grads)

    def skipped():
        return jnp.zeros((), dtype), jax.tree.map(jnp.zeros_like, (dynamic, consts))

    val, grads = jax.lax.cond(step % every == 0, penalised, skipped)
    return val, grads


def _on_every_bwd(value, every, dtype, grads, cotangent):
    dynamic_bar, consts_bar = jax.tree.map(lambda g: cotangent * g, grads)
    return None, dynamic_bar, consts_bar


_on_every.defvjp(_on_every_fwd, _on_every_bwd)
