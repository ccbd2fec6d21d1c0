r"""Built-in dynamical systems whose Lyapunov spectra are known or instructive.

Each system is a frozen dataclass of its parameters (plain JSON values, so that a
job's configuration holds them) with `build(key, dtype)`, which returns a
`DynamicalSystem`: the step of a map (for `lyapunov_spectrum`) or the vector field of
an ODE (for `lyapunov_spectrum_ode`), its initial state and the time one step stands
for. `SYSTEMS` names them:

- `logistic`: x -> r x (1 - x); at r = 4 its exponent is ln 2.
- `henon`: (x, y) -> (1 - a x^2 + y, b x); the Jacobian's determinant is -b, so the two
  exponents sum to ln b (about 0.42 and -1.62 at a = 1.4, b = 0.3).
- `lorenz`: Lorenz-63, dx/dt = sigma (y - x), dy/dt = x (rho - z) - y,
  dz/dt = x y - beta z; at sigma = 10, rho = 28, beta = 8/3 the exponents are about
  0.906, 0 and -14.57 per unit time, and sum to -(sigma + 1 + beta).
- `rate-network`: the random rate network of Sompolinsky, Crisanti & Sommers,
  dx/dt = -x + W tanh x with W_ij ~ N(0, g^2 / N), Euler-discretised with step 0.1;
  chaotic for gains g > 1 as N grows.
- `gru`: a GRU cell briefly trained by Adam to predict a sine wave one step ahead,
  then run autonomously with zero input, h_{t+1} = cell(0, h_t).

Citation: Sompolinsky, Crisanti & Sommers, "Chaos in random neural networks", Physical Review Letters, 1988.
"""  # noqa: E501

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from jacscope._validation import check_count, check_losses, check_number


class DynamicalSystem(NamedTuple):
    """A built system, ready for `lyapunov_spectrum` or `lyapunov_spectrum_ode`.

    - `kind`: `"map"` (`fn` is `step(x) -> x`) or `"ode"` (`fn` is
      `vector_field(t, x) -> dx/dt`).
    - `fn`: the step or the vector field.
    - `x0`: the initial state, a flat array.
    - `dt`: the time one step of a map stands for (exponents are per unit of it: 1 for
      the maps proper, 0.1 for the discretised rate network); `None` for an ODE.
    - `info`: what building it measured, plain JSON (the GRU's training losses).
    """

    kind: Literal["map", "ode"]
    fn: Callable
    x0: jax.Array
    dt: float | None
    info: dict


def _positive(instance: Any, *names: str) -> None:
    for name in names:
        check_number(getattr(instance, name), name)


@dataclasses.dataclass(frozen=True)
class LogisticMap:
    """The logistic map x -> r x (1 - x), from x0 = 0.3.

    **Fields:**

    - `r`: the growth rate, in (0, 4] (4: fully chaotic, exponent ln 2).
    """

    kind: ClassVar[str] = "map"
    summary: ClassVar[str] = "the logistic map x -> r x (1 - x)"
    r: float = 4.0

    def __post_init__(self):
        _positive(self, "r")
        if self.r > 4:
            raise ValueError(f"r must be at most 4 (the map leaves [0, 1] past it), got {self.r}")

    def state_size(self) -> int:
        """n, the number of state variables."""
        return 1

    def build(self, key: jax.Array, dtype: Any) -> DynamicalSystem:
        """The map and its start (`key` is not used: the start is fixed)."""
        del key
        r = self.r
        return DynamicalSystem(
            self.kind, lambda x: r * x * (1 - x), jnp.full(1, 0.3, dtype), 1.0, {}
        )


@dataclasses.dataclass(frozen=True)
class HenonMap:
    """The Hénon map (x, y) -> (1 - a x^2 + y, b x), from (0.1, 0.1).

    **Fields:**

    - `a`: the quadratic term (1.4: the chaotic attractor of Hénon 1976).
    - `b`: the contraction: the Jacobian's determinant is -b, so the two exponents sum
      to ln b.
    """

    kind: ClassVar[str] = "map"
    summary: ClassVar[str] = "the Hénon map (x, y) -> (1 - a x^2 + y, b x)"
    a: float = 1.4
    b: float = 0.3

    def __post_init__(self):
        _positive(self, "a", "b")

    def state_size(self) -> int:
        """n, the number of state variables."""
        return 2

    def build(self, key: jax.Array, dtype: Any) -> DynamicalSystem:
        """The map and its start (`key` is not used: the start is fixed)."""
        del key
        a, b = self.a, self.b

        def step(s):
            x, y = s
            return jnp.stack([1 - a * x**2 + y, b * x])

        return DynamicalSystem(self.kind, step, jnp.full(2, 0.1, dtype), 1.0, {})


@dataclasses.dataclass(frozen=True)
class Lorenz63:
    """The Lorenz-63 flow, from (1, 1, 1); its exponents sum to -(sigma + 1 + beta).

    **Fields:**

    - `sigma`: the Prandtl number.
    - `rho`: the Rayleigh number (28: the butterfly attractor).
    - `beta`: the geometric factor.
    """

    kind: ClassVar[str] = "ode"
    summary: ClassVar[str] = (
        "the Lorenz-63 flow dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z"
    )
    sigma: float = 10.0
    rho: float = 28.0
    beta: float = 8.0 / 3.0

    def __post_init__(self):
        _positive(self, "sigma", "rho", "beta")

    def state_size(self) -> int:
        """n, the number of state variables."""
        return 3

    def build(self, key: jax.Array, dtype: Any) -> DynamicalSystem:
        """The vector field and its start (`key` is not used: the start is fixed)."""
        del key
        sigma, rho, beta = self.sigma, self.rho, self.beta

        def vector_field(t, s):
            x, y, z = s
            return jnp.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])

        return DynamicalSystem(self.kind, vector_field, jnp.ones(3, dtype), None, {})


_EULER_STEP = 0.1  # of the rate network: x <- x + 0.1 (-x + W tanh x)


@dataclasses.dataclass(frozen=True)
class RateNetwork:
    """The random rate network x <- x + 0.1 (-x + W tanh x), W_ij ~ N(0, g^2 / N), from
    x0 ~ N(0, I); W and x0 are drawn from the key. Exponents per unit time.

    **Fields:**

    - `size`: N, the number of units.
    - `gain`: g, the spread of the couplings (chaos for g > 1 in large networks).
    """

    kind: ClassVar[str] = "map"
    summary: ClassVar[str] = (
        "the rate network dx/dt = -x + W tanh x, W_ij ~ N(0, g^2 / N), Euler step 0.1"
    )
    size: int = 100
    gain: float = 4.0

    def __post_init__(self):
        check_count(self.size, "size")
        _positive(self, "gain")

    def state_size(self) -> int:
        """n, the number of state variables."""
        return self.size

    def build(self, key: jax.Array, dtype: Any) -> DynamicalSystem:
        """The map, its couplings and start drawn from `key`."""
        n = self.size
        couplings, start = jax.random.split(key)
        W = self.gain / jnp.sqrt(n) * jax.random.normal(couplings, (n, n), dtype)
        step = lambda x: x + _EULER_STEP * (-x + W @ jnp.tanh(x))
        x0 = jax.random.normal(start, (n,), dtype)
        return DynamicalSystem(self.kind, step, x0, _EULER_STEP, {})


_TASK_LENGTH = 64  # time steps of the GRU's training sequence


@dataclasses.dataclass(frozen=True)
class TrainedGRU:
    """A GRU cell (`equinox.nn.GRUCell`, one input) with a linear readout, trained by
    Adam (learning rate 0.01, full batch) to predict sin(2 pi (t + 1) / 16) from the
    inputs sin(2 pi s / 16), s <= t, over 64 steps from h = 0; then run
    autonomously with zero input from h0 ~ U(-1, 1). Weights and h0 are drawn from the key.

    **Fields:**

    - `hidden`: the hidden size, the state's n.
    - `train_steps`: Adam steps of the training.
    """

    kind: ClassVar[str] = "map"
    summary: ClassVar[str] = "a trained GRU cell run with zero input, h -> cell(0, h)"
    hidden: int = 16
    train_steps: int = 300

    def __post_init__(self):
        check_count(self.hidden, "hidden")
        check_count(self.train_steps, "train_steps")

    def state_size(self) -> int:
        """n, the number of state variables."""
        return self.hidden

    def build(self, key: jax.Array, dtype: Any) -> DynamicalSystem:
        """Train the cell (seconds on a CPU), then the autonomous map and its start.

        **Raises:** `FloatingPointError` if training diverges.
        """
        cell_key, readout_key, start_key = jax.random.split(key, 3)
        model = (
            eqx.nn.GRUCell(1, self.hidden, dtype=dtype, key=cell_key),
            eqx.nn.Linear(self.hidden, 1, dtype=dtype, key=readout_key),
        )
        (cell, _), losses = _train_gru(model, self.train_steps, jnp.dtype(dtype))
        check_losses(losses, "lower --gru-train-steps")
        zero = jnp.zeros(1, dtype)
        x0 = jax.random.uniform(start_key, (self.hidden,), dtype, -1.0, 1.0)
        info = {"loss_first": float(losses[0]), "loss_last": float(losses[-1])}
        return DynamicalSystem(self.kind, lambda h: cell(zero, h), x0, 1.0, info)


@eqx.filter_jit
def _train_gru(model: Any, steps: int, dtype: Any) -> tuple[Any, jax.Array]:
    """`steps` of full-batch Adam on the one-step-ahead sine task; the losses of each."""
    phase = 2 * jnp.pi * jnp.arange(_TASK_LENGTH + 1, dtype=dtype) / 16
    inputs, targets = jnp.sin(phase[:-1])[:, None], jnp.sin(phase[1:])
    hidden = model[0].hidden_size

    def loss(model):
        cell, readout = model

        def step(h, u):
            h = cell(u, h)
            return h, readout(h)[0]

        _, outputs = jax.lax.scan(step, jnp.zeros(hidden, dtype), inputs)
        return jnp.mean((outputs - targets) ** 2)

    optimizer = optax.adam(1e-2)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def update(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(lambda p: loss(eqx.combine(p, static)))(params)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), value

    (params, _), losses = jax.lax.scan(update, (params, optimizer.init(params)), None, steps)
    return eqx.combine(params, static), losses


SYSTEMS: dict[str, type] = {
    "logistic": LogisticMap,
    "henon": HenonMap,
    "lorenz": Lorenz63,
    "rate-network": RateNetwork,
    "gru": TrainedGRU,
}
"""The built-in systems by name: each a frozen dataclass of its parameters with
`kind` (`"map"` or `"ode"`), `summary`, `state_size()` and
`build(key, dtype) -> DynamicalSystem`."""
