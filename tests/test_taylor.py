"""jacscope.taylor: every exact operator and method against dense `jax.hessian` /
`jax.jacfwd` compositions and closed forms (float64, rtol 1e-10), directional
derivatives of orders 1 to 8 against nested `jax.jvp`, control flow and custom-JVP
functions, jit / vmap / grad, refusals by name, and every stochastic estimator's
unbiasedness and variance against the values computed exactly from dense derivatives."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jacscope import taylor
from jacscope.taylor._operators import operator_plans, parse_terms

TIGHT = {"rtol": 1e-10, "atol": 1e-10}
D = 6  # input size; the MLPs are narrower (width 4), so the forward Laplacian compresses
NUM_KEYS = 200
KEYS = jax.random.split(jax.random.key(11), NUM_KEYS)

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "sin": jnp.sin,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
}


def make_mlp(activation, d=D, width=4, outputs=1, seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    w1 = jax.random.normal(keys[0], (d, width)) / d**0.5
    b1 = 0.1 * jax.random.normal(keys[1], (width,))
    w2 = jax.random.normal(keys[2], (width, width)) / width**0.5
    w3 = jax.random.normal(keys[3], (width, outputs)) / width**0.5
    act = ACTIVATIONS[activation]

    def f(x):
        h = act(x @ w1 + b1)
        h = act(h @ w2)
        out = h @ w3
        return out[0] if outputs == 1 else out

    return f


X = jax.random.normal(jax.random.key(3), (D,))


def dense_laplacian(f, x):
    return jnp.trace(jax.jacfwd(jax.jacfwd(f))(x), axis1=-2, axis2=-1)


def dense_biharmonic(f, x):
    return dense_laplacian(lambda y: dense_laplacian(f, y), x)


def J(op, f, *args, **options):
    """`op(f, *args, **options)` compiled: interpreted eagerly, a jet dispatches many
    small operations, and compiling is the faster way to a number."""
    traced = [i for i, a in enumerate(args) if isinstance(a, jax.Array | np.ndarray)]

    def run(*values):
        full = list(args)
        for i, value in zip(traced, values, strict=True):
            full[i] = value
        return op(f, *full, **options)

    return jax.jit(run)(*[args[i] for i in traced])


def close(a, b, **tol):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **(tol or TIGHT))


# ----------------------------------------------------------------- exact operators


SECOND_ORDER_CASES = [(a, 1) for a in ACTIVATIONS] + [("tanh", 3), ("gelu", 3)]


@pytest.mark.parametrize(("activation", "outputs"), SECOND_ORDER_CASES)
def test_second_order_operators_match_the_dense_hessian(activation, outputs):
    f = make_mlp(activation, outputs=outputs)
    H = jax.hessian(f)(X)
    A = jax.random.normal(jax.random.key(5), (D, D))

    @jax.jit  # one program for every method: one compilation
    def every_method(x, A):
        out = {}
        for method in ("taylor", "forward_laplacian", "hvp", "hessian"):
            out["laplacian", method] = taylor.laplacian(f, x, method=method)
            out["weighted", method] = taylor.hessian_trace_weighted(f, x, A, method=method)
        for method in ("taylor", "hvp", "hessian"):
            out["diagonal", method] = taylor.hessian_diagonal(f, x, method=method)
        return out

    expected = {
        "laplacian": jnp.trace(H, axis1=-2, axis2=-1),
        "weighted": jnp.einsum("ij,...ji->...", A, H),
        "diagonal": jnp.diagonal(H, axis1=-2, axis2=-1),
    }
    for (name, method), value in every_method(X, A).items():
        assert value.shape == expected[name].shape, (name, method)
        close(value, expected[name])


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_biharmonic_matches_nested_dense_hessians(activation):
    f = make_mlp(activation, d=4, outputs=2)
    x = X[:4]
    methods = ("taylor", "forward_laplacian", "hvp", "hessian")
    values, reference = jax.jit(
        lambda y: ([taylor.biharmonic(f, y, method=m) for m in methods], dense_biharmonic(f, y))
    )(x)
    for value in values:
        close(value, reference)


def test_closed_forms():
    a = jnp.array([0.3, -0.5, 0.2, 0.7])
    c = jnp.array([1.0, 2.0, 0.5, 1.5])
    x = jnp.array([0.1, -0.4, 0.8, 0.3])
    v = jnp.array([0.4, 0.1, -0.9, 0.6])
    d = x.shape[0]

    def exp_f(y):
        return jnp.exp(a @ y)

    def sines(y):
        return jnp.sum(jnp.sin(c * y))

    def quartic(y):
        return jnp.dot(y, y) ** 2

    e = jnp.exp(a @ x)
    close(J(taylor.laplacian, exp_f, x), (a @ a) * e)
    close(J(taylor.biharmonic, exp_f, x), (a @ a) ** 2 * e)
    close(J(taylor.hessian_diagonal, sines, x), -(c**2) * jnp.sin(c * x))
    close(J(taylor.laplacian, sines, x), -jnp.sum(c**2 * jnp.sin(c * x)))
    close(J(taylor.biharmonic, sines, x), jnp.sum(c**4 * jnp.sin(c * x)))
    # Delta r^4 = 4 (d + 2) r^2, Delta^2 r^4 = 8 d (d + 2).
    close(J(taylor.laplacian, quartic, x), 4 * (d + 2) * (x @ x))
    close(J(taylor.biharmonic, quartic, x), 8 * d * (d + 2))
    A = jnp.diag(c) + 0.1
    close(J(taylor.hessian_trace_weighted, exp_f, x, A), (a @ A @ a) * e)
    for k in range(1, 9):
        close(J(taylor.directional_derivative, exp_f, x, v, k), (a @ v) ** k * e)


def nested_jvp(f, x, v, k):
    g = f
    for _ in range(k):
        g = (lambda h: lambda y: jax.jvp(h, (y,), (v,))[1])(g)
    return g(x)


def small_mlp(activation, d=3, width=3, outputs=2, dtype=jnp.float64):
    """One hidden layer: nested `jax.jvp` of order 8 costs 2^8 copies of it."""
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    w1 = (jax.random.normal(k1, (d, width)) / d**0.5).astype(dtype)
    b1 = (0.1 * jax.random.normal(k2, (width,))).astype(dtype)
    w2 = (jax.random.normal(k3, (width, outputs)) / width**0.5).astype(dtype)
    return lambda x: ACTIVATIONS[activation](x @ w1 + b1) @ w2


def check_directional(activation, orders):
    f = small_mlp(activation)
    x = X[:3]
    v = jax.random.normal(jax.random.key(8), (3,))

    @jax.jit
    def run(x):
        _, coefficients = taylor.jet(f, x, [v] + [jnp.zeros(3)] * (orders - 1))
        ours = [J(taylor.directional_derivative, f, x, v, k) for k in range(1, orders + 1)]
        nested = [nested_jvp(f, x, v, k) for k in range(1, orders + 1)]
        scaled = [math.factorial(k) * c for k, c in enumerate(coefficients, start=1)]
        return scaled, ours, nested

    scaled, ours, nested = run(x)
    for a, b, reference in zip(scaled, ours, nested, strict=True):
        close(a, reference)
        close(b, reference)
    close(J(taylor.directional_derivative, f, x, v, 3, method="jvp"), nested[2])


@pytest.mark.parametrize("activation", ["tanh", "sin"])
def test_directional_derivatives_of_orders_1_to_8_match_nested_jvp(activation):
    check_directional(activation, 8)


@pytest.mark.parametrize("activation", ["softplus", "gelu"])
def test_directional_derivatives_of_orders_1_to_4_match_nested_jvp(activation):
    check_directional(activation, 4)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["softplus", "gelu"])
def test_directional_derivatives_of_orders_1_to_8_match_nested_jvp_slow(activation):
    check_directional(activation, 8)


def test_order_8_stays_finite_and_accurate_in_float32():
    f32 = small_mlp("tanh", outputs=1, dtype=jnp.float32)
    f64 = small_mlp("tanh", outputs=1)
    x = X[:3]
    v = 3.0 * jax.random.normal(jax.random.key(9), (3,))
    ours = J(taylor.directional_derivative, f32, x.astype(jnp.float32), v.astype(jnp.float32), 8)
    reference = J(taylor.directional_derivative, f64, x, v, 8)
    assert ours.dtype == jnp.float32 and np.all(np.isfinite(ours))
    close(ours, reference, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(reference))))


def test_a_jet_along_a_curve_matches_the_composition():
    f = make_mlp("gelu", outputs=2)
    c1, c2, c3 = jax.random.normal(jax.random.key(4), (3, D))

    def along(t):
        return f(X + c1 * t + c2 * t**2 + c3 * t**3)

    primal, series = jax.jit(lambda x: taylor.jet(f, x, [c1, c2, c3]))(X)
    close(primal, f(X))
    derivatives = [along]
    for _ in range(3):
        derivatives.append(jax.jacfwd(derivatives[-1]))
    reference = jax.jit(lambda t: [g(t) for g in derivatives[1:]])(0.0)
    for k in range(1, 4):
        close(series[k - 1], reference[k - 1] / math.factorial(k))


def test_a_general_differential_operator_matches_dense_derivative_tensors():
    f = make_mlp("tanh", d=3, outputs=2)
    x = X[:3]
    terms = {
        (0, 0, 0): 0.3,
        (1, 0, 0): -1.0,
        (2, 0, 0): 1.0,
        (1, 1, 0): 2.0,
        (0, 1, 2): -0.5,
        (2, 2, 0): 0.25,
        (1, 1, 1): 1.5,
        (0, 0, 4): -0.1,
    }
    ours = jax.jit(taylor.differential_operator(f, terms))(x)
    close(ours, jax.jit(taylor.differential_operator(f, terms, method="dense"))(x))
    as_pairs = [(c, alpha) for alpha, c in terms.items()]
    close(jax.jit(taylor.differential_operator(f, as_pairs))(x), ours)
    laplacian = {(2, 0, 0): 1.0, (0, 2, 0): 1.0, (0, 0, 2): 1.0}
    close(jax.jit(taylor.differential_operator(f, laplacian))(x), J(taylor.laplacian, f, x))


def test_the_polarisation_weights_merge_multiples():
    (_, plans) = operator_plans(parse_terms({(3, 0): 1.0}, "test"))
    (plan,) = plans
    assert plan.directions.tolist() == [[1.0, 0.0]] and plan.weights.tolist() == [6.0]
    (_, plans) = operator_plans(parse_terms({(1, 1): 1.0}, "test"))
    assert len(plans[0].weights) == 3  # e_1, e_2, e_1 + e_2


# --------------------------------------------------- control flow and custom rules


def test_scan_while_cond_checkpoint_and_custom_rules_match_nested_jvp():
    w = jax.random.normal(jax.random.key(2), (D, D)) / D**0.5

    def rnn(x):
        def step(h, u):
            return jnp.tanh(h @ w + u), jnp.sum(h**2)

        h, ys = jax.lax.scan(step, 0.5 * x, jnp.stack([x, -x, 2 * x]))
        return jnp.sum(h) + jnp.sum(ys)

    def loop(x):
        return jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, jnp.sin(c[1])), (0, x))[
            1
        ].sum()

    def branch(x):
        return jax.lax.cond(x[0] > 0, lambda y: jnp.sin(y) @ w, lambda y: jnp.cos(y) @ w, x).sum()

    def checkpointed(x):
        return jax.checkpoint(lambda y: jnp.exp(jnp.tanh(y)))(x).sum()

    def kinked(x):  # softplus and relu at exactly 0: their custom JVP rules, not the kinks
        return jnp.sum(jax.nn.softplus(x * 0.0) * x) + jnp.sum(jax.nn.relu(x))

    v = jax.random.normal(jax.random.key(6), (D,))
    x = X.at[1].set(0.0)
    for f in (rnn, loop, branch, checkpointed, kinked):

        @jax.jit
        def both(y, f=f):
            _, coefficients = taylor.jet(f, y, [v] + [jnp.zeros(D)] * 3)
            nested = [nested_jvp(f, y, v, k) for k in range(1, 5)]
            laplacians = [taylor.laplacian(f, y, method=m) for m in ("forward_laplacian", "taylor")]
            return coefficients, nested, laplacians, dense_laplacian(f, y)

        coefficients, nested, laplacians, reference = both(x)
        for k in range(1, 5):
            close(math.factorial(k) * coefficients[k - 1], nested[k - 1])
        for value in laplacians:
            close(value, reference)


def test_a_primitive_without_a_rule_is_refused_by_name():
    def f(x):
        return jnp.sum(jnp.sort(x) * x)

    with pytest.raises(taylor.UnsupportedPrimitive, match="'sort'"):
        J(taylor.laplacian, f, X)
    with pytest.raises(taylor.UnsupportedPrimitive, match="'sort'"):
        taylor.jet(f, X, [X])


# ------------------------------------------------------------ transformations


def test_jit_vmap_and_grad():
    f_of = functools.partial

    def mlp(params, x):
        w1, w2 = params
        return jnp.tanh(jnp.tanh(x @ w1) @ w2).sum()

    params = (
        jax.random.normal(jax.random.key(0), (D, 4)) / 2,
        jax.random.normal(jax.random.key(1), (4, 3)) / 2,
    )
    xs = jax.random.normal(jax.random.key(2), (5, D))
    ours = jax.jit(jax.vmap(lambda x: taylor.laplacian(f_of(mlp, params), x)))(xs)
    close(ours, jax.vmap(lambda x: dense_laplacian(f_of(mlp, params), x))(xs))

    @jax.jit
    def gradients(params, x):
        out = {}
        for method in ("forward_laplacian", "taylor"):
            out[method] = jax.grad(lambda p, m=method: taylor.laplacian(f_of(mlp, p), x, method=m))(
                params
            )
        out["dense"] = jax.grad(lambda p: dense_laplacian(f_of(mlp, p), x))(params)
        return out

    out = gradients(params, X)
    for method in ("forward_laplacian", "taylor"):
        for a, b in zip(out[method], out["dense"], strict=True):
            close(a, b)
    small = (params[0][:3], params[1])

    @jax.jit
    def biharmonic_gradients(x):
        return (
            jax.grad(lambda y: taylor.biharmonic(f_of(mlp, small), y))(x),
            jax.grad(lambda y: dense_biharmonic(f_of(mlp, small), y))(x),
        )

    close(*biharmonic_gradients(X[:3]), rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ refusals


def test_inputs_are_checked_with_one_line_errors():
    f = make_mlp("tanh")
    with pytest.raises(ValueError, match="method must be one of"):
        J(taylor.laplacian, f, X, method="nope")
    with pytest.raises(ValueError, match="one flat point"):
        J(taylor.laplacian, f, jnp.ones((2, D)))
    with pytest.raises(ValueError, match="floating point"):
        J(taylor.laplacian, f, jnp.arange(D))
    with pytest.raises(ValueError, match="scalar or a vector"):
        taylor.laplacian(lambda x: jnp.outer(x, x), X)
    with pytest.raises(ValueError, match=r"A must be \(6, 6\)"):
        J(taylor.hessian_trace_weighted, f, X, jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        J(taylor.directional_derivative, f, X, X, 0)
    with pytest.raises(ValueError, match="v must have x's shape"):
        J(taylor.directional_derivative, f, X, X[:2], 2)
    with pytest.raises(ValueError, match="non-negative integers"):
        taylor.differential_operator(f, {(1, -1): 1.0})
    with pytest.raises(ValueError, match="has length 1, the first has 2"):
        taylor.differential_operator(f, {(1, 0): 1.0, (1,): 2.0})
    with pytest.raises(ValueError, match="x has length 6, the multi-indices 2"):
        taylor.differential_operator(f, {(1, 1): 1.0})(X)
    with pytest.raises(ValueError, match="subset_size must be an integer >= 1"):
        taylor.Sparse(0)
    with pytest.raises(ValueError, match="tangent must be one of"):
        taylor.Dense("uniform")
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        taylor.stde_laplacian(f, X, key=KEYS[0], num_samples=1)
    with pytest.raises(ValueError, match="needs Dense\\('gaussian'\\)"):
        taylor.stde_biharmonic(f, X, key=KEYS[0], estimator=taylor.Dense("rademacher"))
    with pytest.raises(ValueError, match="subset_size=7 exceeds"):
        taylor.stde_laplacian(f, X, key=KEYS[0], estimator=taylor.Sparse(7))


# ------------------------------------------------------------ stochastic estimators

SAMPLES = 8


def over_keys(estimate):
    """`estimate(key)` for every key: values and per-key sample variances."""
    result = jax.jit(jax.vmap(estimate))(KEYS)
    return np.asarray(result.value), np.asarray(result.stderr) ** 2 * SAMPLES


def assert_mean_and_variance(values, variances, truth, variance):
    """The pooled mean within 4 true standard errors of the truth, and the mean sample
    variance within 4 standard errors (its spread over the keys) of the stated one."""
    truth, variance = np.asarray(truth), np.asarray(variance)
    pooled = values.mean(axis=0)
    bound = 4 * np.sqrt(variance / (SAMPLES * NUM_KEYS)) + 1e-12
    assert np.all(np.abs(pooled - truth) <= bound), (pooled, truth, bound)
    mean_variance = variances.mean(axis=0)
    spread = variances.std(axis=0, ddof=1) / np.sqrt(NUM_KEYS)
    assert np.all(np.abs(mean_variance - variance) <= 4 * spread + 1e-10), (
        mean_variance,
        variance,
        spread,
    )


def sparse_variance(terms, subset):
    """(n^2 / B) (n - B) / (n - 1) sigma^2 of a sum of n terms (the docstrings')."""
    terms = np.asarray(terms)
    n = terms.shape[0]
    if subset >= n:
        return np.zeros(terms.shape[1:])
    return n**2 / subset * (n - subset) / (n - 1) * terms.var(axis=0)


F = make_mlp("tanh", outputs=2, seed=4)
HESSIAN = np.asarray(jax.hessian(F)(X))  # (2, D, D)


@pytest.mark.parametrize("tangent", ["rademacher", "gaussian"])
def test_dense_laplacian_is_hutchinson_with_its_stated_variance(tangent):
    values, variances = over_keys(
        lambda k: taylor.stde_laplacian(
            F, X, key=k, num_samples=SAMPLES, estimator=taylor.Dense(tangent)
        )
    )
    H = HESSIAN
    frobenius = np.sum(H**2, axis=(1, 2))
    diagonal = np.sum(np.diagonal(H, axis1=1, axis2=2) ** 2, axis=1)
    variance = 2 * (frobenius - diagonal) if tangent == "rademacher" else 2 * frobenius
    assert_mean_and_variance(values, variances, np.trace(H, axis1=1, axis2=2), variance)


@pytest.mark.parametrize("subset", [1, 3])
def test_sparse_laplacian_and_diagonal(subset):
    estimator = taylor.Sparse(subset)
    diagonal = np.diagonal(HESSIAN, axis1=1, axis2=2)  # (2, D)
    values, variances = over_keys(
        lambda k: taylor.stde_laplacian(F, X, key=k, num_samples=SAMPLES, estimator=estimator)
    )
    assert_mean_and_variance(
        values, variances, diagonal.sum(axis=1), sparse_variance(diagonal.T, subset)
    )
    values, variances = over_keys(
        lambda k: taylor.stde_hessian_diagonal(
            F, X, key=k, num_samples=SAMPLES, estimator=estimator
        )
    )
    assert_mean_and_variance(values, variances, diagonal, diagonal**2 * (D / subset - 1))


def test_dense_hessian_diagonal_with_its_stated_variance():
    values, variances = over_keys(
        lambda k: taylor.stde_hessian_diagonal(
            F, X, key=k, num_samples=SAMPLES, estimator=taylor.Dense("gaussian")
        )
    )
    variance = np.zeros((2, D))
    for out in range(2):
        H = HESSIAN[out]
        for i in range(D):
            a = H[i, i]
            b = np.delete(H[i], i)
            C = np.delete(np.delete(H, i, axis=0), i, axis=1)
            variance[out, i] = (
                18.5 * a**2 + 10 * b @ b + np.trace(C) ** 2 / 2 + np.sum(C**2) + 5 * a * np.trace(C)
            )
    assert_mean_and_variance(values, variances, np.diagonal(HESSIAN, axis1=1, axis2=2), variance)


@pytest.mark.parametrize("estimator", [taylor.Dense("rademacher"), taylor.Dense("gaussian"),
                                       taylor.Sparse(2)])  # fmt: skip
def test_weighted_trace_estimators(estimator):
    A = np.asarray(jax.random.normal(jax.random.key(12), (D, D)))
    values, variances = over_keys(
        lambda k: taylor.stde_hessian_trace_weighted(
            F, X, A, key=k, num_samples=SAMPLES, estimator=estimator
        )
    )
    truth = np.einsum("ij,oji->o", A, HESSIAN)
    if isinstance(estimator, taylor.Sparse):
        eye = np.eye(D)
        plus = np.einsum("ri,oij,rj->ro", eye + A, HESSIAN, eye + A) / 4
        minus = -np.einsum("ri,oij,rj->ro", eye - A, HESSIAN, eye - A) / 4
        variance = sparse_variance(np.concatenate([plus, minus]), 2)
    else:
        M = A @ HESSIAN  # (2, D, D)
        S = (M + np.swapaxes(M, 1, 2)) / 2
        frobenius = np.sum(S**2, axis=(1, 2))
        if estimator.tangent == "rademacher":
            variance = 2 * (frobenius - np.sum(np.diagonal(S, axis1=1, axis2=2) ** 2, axis=1))
        else:
            variance = 2 * frobenius
    assert_mean_and_variance(values, variances, truth, variance)


def test_biharmonic_estimators():
    d = 3
    f = make_mlp("sin", d=d, outputs=1, seed=5)
    x = X[:d]
    T = np.asarray(jax.jit(jax.jacfwd(jax.jacfwd(jax.hessian(f))))(x))  # D^4 f, (d, d, d, d)
    truth = np.einsum("iijj->", T)
    P = np.einsum("iikl->kl", T)
    values, variances = over_keys(
        lambda k: taylor.stde_biharmonic(f, x, key=k, num_samples=SAMPLES)
    )
    assert_mean_and_variance(values, variances, truth, 8 * np.sum(P**2) + 8 / 3 * np.sum(T**2))

    def y4(v):
        return np.einsum("ijkl,i,j,k,l->", T, v, v, v, v) / 24

    eye = np.eye(d)
    terms = [(24 - 8 * (d - 1)) * y4(eye[i]) for i in range(d)]
    for i in range(d):
        for j in range(i + 1, d):
            terms += [4 * y4(eye[i] + eye[j]), 4 * y4(eye[i] - eye[j])]
    values, variances = over_keys(
        lambda k: taylor.stde_biharmonic(
            f, x, key=k, num_samples=SAMPLES, estimator=taylor.Sparse(2)
        )
    )
    assert_mean_and_variance(values, variances, truth, sparse_variance(terms, 2))


def test_general_operator_estimators_with_variances_by_quadrature():
    d = 2
    f = make_mlp("tanh", d=d, outputs=1, seed=7)
    x = X[:d]
    terms = {(2, 0): 1.0, (1, 1): -2.0, (0, 3): 0.5, (1, 0): 0.7, (0, 0): 0.2}
    truth = jax.jit(taylor.differential_operator(f, terms, method="dense"))(x)
    tensors = {}
    g = f
    for k in range(1, 4):
        g = jax.jacfwd(g)
        tensors[k] = np.asarray(g(x))

    def y(k, v):
        out = tensors[k]
        for _ in range(k):
            out = out @ v
        return out / math.factorial(k)

    # Dense: Var = E[(sum_k y_k(v) h_k(v))^2] - (L f - c_0 f)^2, exact by Gauss-Hermite
    # quadrature (degree 4K = 12 needs 7 points per axis).
    nodes, weights = np.polynomial.hermite_e.hermegauss(7)
    weights = weights / weights.sum()

    def he(n, t):
        return np.polynomial.hermite_e.hermeval(t, [0] * n + [1])

    second = 0.0
    for t1, w1 in zip(nodes, weights, strict=True):
        for t2, w2 in zip(nodes, weights, strict=True):
            v = np.array([t1, t2])
            sample = sum(
                c * he(a[0], t1) * he(a[1], t2) * y(sum(a), v)
                for a, c in terms.items()
                if sum(a) > 0
            )
            second += w1 * w2 * sample**2
    variance = second - (float(truth) - 0.2 * float(f(x))) ** 2
    dense = taylor.stde_differential_operator(
        f, terms, num_samples=SAMPLES, estimator=taylor.Dense("gaussian")
    )
    values, variances = over_keys(lambda k: dense(x, k))
    assert_mean_and_variance(values, variances, truth, variance)

    # Sparse: each order's polarisation terms sampled apart, variances added.
    _, plans = operator_plans(parse_terms(terms, "test"))
    variance = 0.0
    for plan in plans:
        plan_terms = [
            w * y(plan.order, v) for v, w in zip(plan.directions, plan.weights, strict=True)
        ]
        variance += sparse_variance(plan_terms, min(2, plan.size))
    sparse = taylor.stde_differential_operator(
        f, terms, num_samples=SAMPLES, estimator=taylor.Sparse(2)
    )
    values, variances = over_keys(lambda k: sparse(x, k))
    assert_mean_and_variance(values, variances, truth, variance)
