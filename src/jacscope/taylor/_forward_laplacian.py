r"""The forward Laplacian: (value, Jacobian, Laplacian) carried forward through f.

For a second-order trace sum_r w_r D^2 f(x)[v_r, v_r] (the Laplacian: v_r = e_r,
w_r = 1), every intermediate value u of f carries its first-order coefficients
u_{1,r} = D u[v_r] (its Jacobian along the R directions) and one summed second-order
term s_u = sum_r w_r D^2 u[v_r, v_r] / 2 (half its weighted Laplacian). A primitive
y = g(u) maps them by

    y_{1,r} = Dg[u_{1,r}],    s_y = Dg[s_u] + sum_r w_r D^2 g[u_{1,r}, u_{1,r}] / 2,

which is Taylor mode's 2-jet with the top coefficient collapsed (`_jets`), so every
primitive jacscope has a Taylor rule for is covered. Two structural savings make it
cheaper than R separate 2-jets and than R Hessian-vector products:

- **the identity input**: x's Jacobian is I, kept implicit, so a first layer x @ W
  costs nothing beyond the primal: its Jacobian is W's rows;
- **compression at a bottleneck**: the rest of the computation depends on the
  directions only through the Gram matrix G = sum_r w_r u_{1,r} u_{1,r}^T of the
  values alive at that point (s is linear in G, and the u_1 propagate linearly).
  Where their total size m is smaller than R, the R directions are replaced by at most
  2m with the same G: for the positive weights the R factor of the QR factorisation of
  the rows sqrt(w_r) u_{1,r} (m rows, weight +1), likewise for the negative weights
  (weight -1). After the first layer of width n of a d-input network the forward
  Laplacian then carries n directions instead of d: its cost per point no longer grows
  with d beyond the first layer (the QR, of the weights alone, is shared by a vmapped
  batch of points). The QR is differentiable wherever those rows have full column rank.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jacscope.taylor._jets import EYE, Context, propagate

_HEAVY = frozenset({"dot_general", "conv_general_dilated", "scan", "while", "cond"})


def _compress(index, env, last_use, ctx: Context, jaxpr):
    """Replace the R directions by fewer with the same Gram matrix, where the values
    alive after equation `index` are together smaller than R (see the module), and
    a product or loop is still to come (compressing for elementwise work alone does
    not pay for the QR)."""
    if not any(e.primitive.name in _HEAVY for e in jaxpr.eqns[index + 1 :]):
        return
    live = [
        v
        for v, (_, s) in env.items()
        if s is not None and s[0] is not None and last_use.get(v, -1) > index
    ]
    if not live or any(env[v][1][0] is EYE for v in live):
        return
    R = ctx.num_directions
    sizes = [int(np.prod(env[v][1][0].shape[1:], dtype=int)) for v in live]
    m = sum(sizes)
    w = np.asarray(ctx.weights, dtype=np.float64)
    groups = [(1.0, np.flatnonzero(w > 0)), (-1.0, np.flatnonzero(w < 0))]
    if not any(idx.size > m for _, idx in groups):
        return
    stacked = jnp.concatenate([env[v][1][0].reshape(R, -1) for v in live], axis=1)
    rows, weights = [], []
    for sign, idx in groups:
        if idx.size == 0:
            continue
        block = stacked[idx] * jnp.asarray(np.sqrt(np.abs(w[idx])), stacked.dtype)[:, None]
        if idx.size > m:
            block = jnp.linalg.qr(block, mode="r")
        rows.append(block)
        weights.append(np.full(block.shape[0], sign))
    stacked = jnp.concatenate(rows, axis=0)
    ctx.num_directions = stacked.shape[0]
    ctx.weights = np.concatenate(weights)
    start = 0
    for v, size in zip(live, sizes, strict=True):
        primal, series = env[v]
        first = stacked[:, start : start + size].reshape(ctx.num_directions, *jnp.shape(primal))
        env[v] = (primal, [first, *series[1:]])
        start += size


def second_order_trace(f, x, directions, weights, *, caller: str, compress: bool = True):
    r"""`(f(x), sum_r w_r D^2 f(x)[v_r, v_r])` by the forward Laplacian.

    `directions`: `(R, d)` rows v_r, or `EYE` for e_1, ..., e_d; `weights`: `(R,)`
    static numbers; `compress`: whether to compress at bottlenecks (off for a function
    that is itself differentiated by Taylor mode: the QR has no Taylor rule).
    """
    num = x.shape[0] if directions is EYE else directions.shape[0]
    weights = np.asarray(weights, dtype=np.float64)
    # D^2 f[v, v] = 2 y_2: the collapsed top carries sum_r (2 w_r) y_{2,r}.
    ctx = Context(
        order=2,
        num_directions=num,
        weights=2.0 * weights,
        caller=caller,
        after_eqn=_compress if compress else None,
    )
    primal, (_, top) = propagate(f, x, directions, ctx)
    return primal, top
