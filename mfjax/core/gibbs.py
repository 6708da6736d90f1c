"""Bayesian matrix factorisation by Gibbs sampling: every row drawn in closed form.

The rating objective's squared error is read as a Gaussian likelihood,
``r ~ N(mean + b_u + c_i + p_u·q_i, 1/(w·noise))`` for a rating of weight ``w``,
with a sampled noise precision. Each user's row ``[b_u, p_u]`` has a Gaussian
prior whose mean and precision per dimension have a Normal–Gamma hyperprior
(as libFM and myFM), and so has each item's ``[c_i, q_i]``. Given the items,
a user's row is Gaussian in closed form, and every user's is drawn at once
(:func:`draw_rows`): one batched Cholesky of ``(rank+1)²`` precision matrices.
A sweep draws the users, the items, both hyperpriors and the noise; one
``lax.scan`` runs the sweeps, carrying the sampler's state and the running
posterior mean. The keys are split per sweep, so a run is a pure function of
its key: reproducible, jittable, and chains run side by side under ``vmap``.

The posterior mean is served as an ordinary :class:`mfjax.Params`: biases
averaged over the draws after burn-in, and the kept draws' factors side by
side, scaled by ``1/sqrt(K)``, so that its prediction is the mean of the kept
draws' predictions (:func:`posterior_params`).

The per-row Gram matrices ``Σ w z zᵀ`` are the sweep's main cost. Where the
rating matrix is small and dense enough they are one dense matmul (the weight
matrix times the other side's outer products); otherwise a sorted
``segment_sum`` of the ratings' outer products (:class:`Design`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mfjax.core import kernels
from mfjax.types import Params, Ratings

__all__ = [
  "Hyper",
  "DEFAULT_HYPER",
  "Prior",
  "GibbsState",
  "Design",
  "SamplerResult",
  "design",
  "init_state",
  "draw_rows",
  "side_statistics",
  "Variates",
  "gamma",
  "gamma_count",
  "draw_prior",
  "draw_noise",
  "sweep",
  "sweep_count",
  "sample",
  "posterior_params",
  "Sketch",
  "sketch_init",
  "sketch_add",
  "sketch_factors",
  "DENSE_CELLS",
  "DENSE_DENSITY",
]

# The Grams as one dense matmul while the weight matrix has at most this many
# cells and at least this density: on 2 CPU cores, MovieLens 100k (1.6M cells,
# density 0.05) sweeps ~4x faster dense (benchmarks/RESULTS.md, "Gibbs").
DENSE_CELLS = 1 << 24
DENSE_DENSITY = 0.01


class Hyper(NamedTuple):
  """The sampler's constants (myFM's defaults).

  Attributes:
    noise_shape, noise_rate: the Gamma prior of the noise precision.
    prior_shape, prior_rate: the Gamma hyperprior of each dimension's prior
      precision.
    prior_strength: the Normal hyperprior of each dimension's prior mean is
      ``N(0, 1/(prior_strength·precision))``.
    init_scale: standard deviation of the initial factors.
  """

  noise_shape: float = 1.0
  noise_rate: float = 1.0
  prior_shape: float = 1.0
  prior_rate: float = 1.0
  prior_strength: float = 1.0
  init_scale: float = 0.1


DEFAULT_HYPER = Hyper()


class Prior(NamedTuple):
  """A Gaussian prior with diagonal precision over the rows ``[bias, factors]``."""

  mean: jax.Array  # shape=(rank + 1,)
  precision: jax.Array  # shape=(rank + 1,)


class GibbsState(NamedTuple):
  """The sampler's state after a sweep: one draw of everything."""

  params: Params
  noise: jax.Array  # shape=(), the noise precision
  user_prior: Prior
  item_prior: Prior
  rmse: jax.Array  # shape=(), the params' weighted training RMSE


class Design(NamedTuple):
  """The ratings laid out for the sweeps' Gram matrices.

  Attributes:
    weights: dense: the ``[n_users, n_items]`` weight matrix (0 where no
      rating); sparse: None.
    values: dense: the weighted ratings at those cells (0 elsewhere); sparse:
      None.
    weights_t, values_t: dense: their transposes, laid out for the items'
      Grams; sparse: None.
    by_user: sparse: the ratings ``(users, items, values, weights)`` sorted by
      user; dense: None.
    by_item: sparse: the same sorted by item; dense: None.
    pairs: the ratings ``(users, items, values, weights)`` as given, for the
      squared error of the noise draw.
    mean: the weighted mean rating, fixed (``Params.mean``).
  """

  weights: jax.Array | None
  values: jax.Array | None
  weights_t: jax.Array | None
  values_t: jax.Array | None
  by_user: tuple | None
  by_item: tuple | None
  pairs: tuple
  mean: jax.Array


class SamplerResult(NamedTuple):
  """What :func:`sample` returns; a pytree.

  Attributes:
    params: the posterior mean as :class:`mfjax.Params`
      (:func:`posterior_params`), of rank ``kept · rank``.
    state: the sampler's state after the last sweep (its last draw).
    noise: the noise precision drawn at each sweep, burn-in included.
    rmse: the training RMSE of each sweep's draw.
  """

  params: Params
  state: GibbsState
  noise: jax.Array
  rmse: jax.Array


def design(ratings: Ratings, *, dense: bool | None = None) -> Design:
  """Lays out ``ratings`` for the sweeps (traceable; ``dense`` None decides by
  :data:`DENSE_CELLS` and :data:`DENSE_DENSITY` on the static shapes)."""
  users, items = ratings.users, ratings.items
  values = ratings.values.astype(jnp.float32)
  weights, _ = kernels.rating_weights(ratings, jnp.float32)
  mean = kernels.ratings_mean(ratings, jnp.float32)
  cells = ratings.n_users * ratings.n_items
  if dense is None:
    dense = cells <= DENSE_CELLS and len(ratings) >= DENSE_DENSITY * cells
  pairs = (users, items, values, weights)
  if dense:
    shape = (ratings.n_users, ratings.n_items)
    w = jnp.zeros(shape, jnp.float32).at[users, items].add(weights, mode="drop")
    v = (
      jnp.zeros(shape, jnp.float32).at[users, items].add(weights * values, mode="drop")
    )
    # A cell rated twice holds the weight sum and the weighted value sum; the
    # likelihood of both ratings is that of their weighted mean (up to a
    # constant), which is what the Grams and right-hand sides use.
    return Design(w, v, w.T, v.T, None, None, pairs, mean)

  def by(order):
    return tuple(x[order] for x in pairs)

  return Design(
    None,
    None,
    None,
    None,
    by(jnp.argsort(users)),
    by(jnp.argsort(items)),
    pairs,
    mean,
  )


def init_state(key: jax.Array, n_users: int, n_items: int, rank: int, mean,
               hyper: Hyper = DEFAULT_HYPER) -> GibbsState:  # fmt: skip
  """Factors drawn ``N(0, init_scale²)``, biases 0, unit priors and noise, and
  an RMSE of NaN (not yet measured)."""
  factors = hyper.init_scale * jax.random.normal(key, (n_users + n_items, rank))
  params = Params(
    user_factors=factors[:n_users],
    item_factors=factors[n_users:],
    user_bias=jnp.zeros(n_users, jnp.float32),
    item_bias=jnp.zeros(n_items, jnp.float32),
    mean=jnp.asarray(mean, jnp.float32),
  )
  unit = Prior(jnp.zeros(rank + 1, jnp.float32), jnp.ones(rank + 1, jnp.float32))
  return GibbsState(params, jnp.float32(1.0), unit, unit, jnp.float32(jnp.nan))


class Variates:
  """Standard uniforms and normals cut, in order, from one block of uniforms.

  Every random number of a sweep comes from one ``jax.random.uniform`` call:
  each threefry call site takes ~0.5 s to compile on 2 CPU cores, and a sweep
  needs a dozen. ``count`` must cover what is cut (a ValueError at trace time
  says so); normals are ``√2·erfinv(2u - 1)``, as ``jax.random.normal``.
  """

  def __init__(self, key: jax.Array, count: int):
    tiny = jnp.finfo(jnp.float32).tiny
    self.values = jax.random.uniform(key, (count,), jnp.float32, minval=tiny)
    self.used = 0

  def uniform(self, shape: tuple) -> jax.Array:
    n = int(np.prod(shape, dtype=np.int64))
    if self.used + n > self.values.shape[0]:
      raise ValueError(
        f"Variates of {self.values.shape[0]} values cannot give {n} more after "
        f"{self.used}."
      )
    out = self.values[self.used : self.used + n].reshape(shape)
    self.used += n
    return out

  def normal(self, shape: tuple) -> jax.Array:
    lo = np.nextafter(np.float32(-1), np.float32(0))
    return np.sqrt(2).astype(np.float32) * jax.lax.erf_inv(
      jnp.maximum(2.0 * self.uniform(shape) - 1.0, lo)
    )


GAMMA_TRIES = 8


def gamma_count(size: tuple = ()) -> int:
  """How many uniforms :func:`gamma` cuts for ``size`` draws."""
  n = int(np.prod(size, dtype=np.int64))
  return (2 * GAMMA_TRIES + 1) * n


def gamma(variates: Variates, shape: jax.Array, size: tuple = ()) -> jax.Array:
  """Draws ``Gamma(shape, 1)`` by Marsaglia and Tsang's method (2000), with
  :data:`GAMMA_TRIES` candidates at once and the first accepted taken.

  ``jax.random.gamma`` is exact too, but its rejection loop takes seconds to
  compile (1.7 s for one scalar on 2 CPU cores), three times a sweep. For
  ``shape >= 1`` a candidate is accepted with probability above 0.95, so all
  8 fail with probability below 1e-10 (then the last is taken); a smaller
  shape draws ``Gamma(shape + 1)·U^(1/shape)``.
  """
  x = variates.normal((GAMMA_TRIES, *size))
  u = variates.uniform((GAMMA_TRIES, *size))
  boost = variates.uniform(size)
  shape = jnp.broadcast_to(jnp.asarray(shape, jnp.float32), size)
  boosted = shape < 1
  d = jnp.where(boosted, shape + 1, shape) - 1.0 / 3.0
  v = (1.0 + x / jnp.sqrt(9.0 * d[None])) ** 3
  safe_v = jnp.where(v > 0, v, 1.0)
  accept = (v > 0) & (
    jnp.log(u) < 0.5 * x * x + d[None] - d[None] * safe_v + d[None] * jnp.log(safe_v)
  )
  first = jnp.argmax(accept.at[-1].set(True), axis=0)
  draw = d * jnp.take_along_axis(safe_v, first[None], axis=0)[0]
  return jnp.where(boosted, draw * boost ** (1.0 / shape), draw)


def draw_rows(variates: Variates, gram: jax.Array, rhs: jax.Array, noise: jax.Array,
              prior: Prior) -> jax.Array:  # fmt: skip
  """One draw of every row from its Gaussian conditional.

  Row ``j`` has precision ``Λ_j = noise·gram[j] + diag(prior.precision)`` and
  mean ``Λ_j⁻¹ (noise·rhs[j] + prior.precision·prior.mean)``; with ``Λ_j = L
  Lᵀ``, the draw is that mean plus ``L⁻ᵀ ε``, ``ε ~ N(0, I)``.

  Args:
    variates: where ``ε`` comes from (``rhs.size`` normals).
    gram: ``[n, d, d]``, each row's ``Σ w z zᵀ``.
    rhs: ``[n, d]``, each row's ``Σ w z (r - offset)``.
    noise: the noise precision.
    prior: the rows' prior.

  Returns:
    ``[n, d]``.
  """
  precision = noise * gram + jnp.diag(prior.precision)[None]
  chol = jnp.linalg.cholesky(precision)
  target = noise * rhs + (prior.precision * prior.mean)[None]
  solve = jax.scipy.linalg.solve_triangular
  half = solve(chol, target[..., None], lower=True)
  eps = variates.normal(rhs.shape + (1,))
  return solve(chol, half + eps, lower=True, trans="T")[..., 0]


def _with_bias(factors: jax.Array) -> jax.Array:
  return jnp.concatenate([jnp.ones((factors.shape[0], 1), factors.dtype), factors], 1)


def side_statistics(d: Design, side: str, params: Params):
  """The Grams ``[n, k+1, k+1]`` and right-hand sides ``[n, k+1]`` of one side's
  rows (``"user"`` or ``"item"``) given the other side's current draw."""
  if side == "user":
    n, other, offset = params.user_bias.shape[0], params.item_factors, params.item_bias
  else:
    n, other, offset = params.item_bias.shape[0], params.user_factors, params.user_bias
  z = _with_bias(other)
  k1 = z.shape[1]
  # The Grams are symmetric: only their upper triangles are summed (66 of 121
  # entries at rank 10), then mirrored.
  upper, lower = np.triu_indices(k1)
  mirror = np.zeros((k1, k1), np.int32)
  mirror[upper, lower] = mirror[lower, upper] = np.arange(len(upper))
  t = len(upper)
  if d.weights is not None:
    # One matmul for the Grams and the offsets' share of the right-hand sides:
    # rhs = V z - W ((mean + offset) z), V the weighted values.
    outer = z[:, upper] * z[:, lower]
    shifted = -(d.mean + offset)[:, None] * z
    w, v = (d.weights, d.values) if side == "user" else (d.weights_t, d.values_t)
    both = w @ jnp.concatenate([outer, shifted], axis=1)
    return both[:, mirror], both[:, t:] + v @ z
  users, items, values, weights = d.by_user if side == "user" else d.by_item
  rows, others = (users, items) if side == "user" else (items, users)
  zr = z[others]
  residual = weights * (values - d.mean - offset[others])
  outer = weights[:, None] * zr[:, upper] * zr[:, lower]
  segment = lambda x: jax.ops.segment_sum(x, rows, n, indices_are_sorted=True)
  return segment(outer)[:, mirror], segment(residual[:, None] * zr)


def draw_prior(variates: Variates, rows: jax.Array, hyper: Hyper) -> Prior:
  """A joint Normal–Gamma draw of each dimension's prior mean and precision
  given the rows ``[n, d]`` (``gamma_count((d,)) + d`` variates)."""
  n, size = rows.shape[0], rows.shape[1:]
  strength = hyper.prior_strength + n
  average = jnp.mean(rows, axis=0)
  spread = jnp.sum(jnp.square(rows - average[None]), axis=0)
  shift = hyper.prior_strength * n * jnp.square(average) / strength
  rate = hyper.prior_rate + 0.5 * (spread + shift)
  precision = gamma(variates, hyper.prior_shape + 0.5 * n, size) / rate
  spread = variates.normal(size) / jnp.sqrt(strength * precision)
  return Prior(n * average / strength + spread, precision)


def _squared_error(d: Design, params: Params):
  users, items, values, weights = d.pairs
  error = values - kernels.predict_pairs(params, users, items)
  return jnp.sum(weights * jnp.square(error)), jnp.sum(weights)


def draw_noise(
  variates: Variates, sse: jax.Array, total: jax.Array, hyper: Hyper
) -> jax.Array:
  """The noise precision given the params' weighted squared error ``sse`` over
  ``total`` weight: ``Gamma(a + total/2, b + sse/2)``."""
  shape = hyper.noise_shape + 0.5 * total
  return gamma(variates, shape) / (hyper.noise_rate + 0.5 * sse)


def sweep_count(n_users: int, n_items: int, rank: int) -> int:
  """How many uniforms one :func:`sweep` cuts."""
  d = rank + 1
  return (n_users + n_items) * d + 2 * (gamma_count((d,)) + d) + gamma_count()


def sweep(key: jax.Array, d: Design, state: GibbsState, hyper: Hyper) -> GibbsState:
  """One Gibbs sweep: users, items, both priors, the noise."""
  params = state.params
  n_users, n_items, rank = *params.user_bias.shape, *params.item_factors.shape
  variates = Variates(key, sweep_count(n_users, n_items, rank))
  gram, rhs = side_statistics(d, "user", params)
  users = draw_rows(variates, gram, rhs, state.noise, state.user_prior)
  params = params._replace(user_bias=users[:, 0], user_factors=users[:, 1:])
  gram, rhs = side_statistics(d, "item", params)
  items = draw_rows(variates, gram, rhs, state.noise, state.item_prior)
  params = params._replace(item_bias=items[:, 0], item_factors=items[:, 1:])
  user_prior = draw_prior(variates, users, hyper)
  item_prior = draw_prior(variates, items, hyper)
  sse, total = _squared_error(d, params)
  noise = draw_noise(variates, sse, total, hyper)
  rmse = jnp.sqrt(sse / jnp.maximum(total, jnp.finfo(jnp.float32).tiny))
  return GibbsState(params, noise, user_prior, item_prior, rmse)


class Sketch(NamedTuple):
  """A randomized sketch of the sum of the draws' ``P Qᵀ`` (Tropp, Yurtsever,
  Udell and Cevher, "Practical sketching algorithms for low-rank matrix
  approximation", 2017): ``range = Σ P (Qᵀ Ω)`` and ``co_range = Σ (Ψ P) Qᵀ``,
  added to after each draw in ``O((n_users + n_items)·rank·width)``, never the
  ``n_users × n_items`` matrix itself."""

  omega: jax.Array  # shape=(n_items, width)
  psi: jax.Array  # shape=(2·width + 1, n_users), at most n_users rows
  range: jax.Array  # shape=(n_users, width)
  co_range: jax.Array  # shape=(2·width + 1, n_items)


def sketch_init(key: jax.Array, n_users: int, n_items: int, width: int) -> Sketch:
  """An empty sketch of ``width`` columns (cut to the matrix's size)."""
  width = min(width, n_users, n_items)
  co_width = min(2 * width + 1, n_users)
  both = jax.random.normal(key, (n_items * width + co_width * n_users,))
  omega = both[: n_items * width].reshape(n_items, width)
  psi = both[n_items * width :].reshape(co_width, n_users)
  zeros = jnp.zeros
  return Sketch(
    omega,
    psi,
    zeros((n_users, width), jnp.float32),
    zeros((co_width, n_items), jnp.float32),
  )


def sketch_add(
  sketch: Sketch, user_factors: jax.Array, item_factors: jax.Array
) -> Sketch:
  """The sketch with one more draw's ``user_factors @ item_factors.T`` added."""
  return sketch._replace(
    range=sketch.range + user_factors @ (item_factors.T @ sketch.omega),
    co_range=sketch.co_range + (sketch.psi @ user_factors) @ item_factors.T,
  )


def sketch_factors(sketch: Sketch, count, rank: int) -> tuple[jax.Array, jax.Array]:
  """``(U, V)`` of rank ``min(rank, width)`` with ``U Vᵀ`` the best rank-``rank``
  approximation (up to the sketch's error) of the sketched sum over ``count``:
  ``Q = qr(range)``, ``X = (Ψ Q)⁺ co_range``, then an SVD of ``X``, its
  singular values split evenly between the two sides."""
  basis, _ = jnp.linalg.qr(sketch.range)
  core, *_ = jnp.linalg.lstsq(sketch.psi @ basis, sketch.co_range / count)
  left, values, right = jnp.linalg.svd(core, full_matrices=False)
  rank = min(rank, values.shape[0])
  root = jnp.sqrt(values[:rank])
  return (basis @ left[:, :rank]) * root[None], right[:rank].T * root[None]


def posterior_params(
  mean: jax.Array, user_bias: jax.Array, item_bias: jax.Array,
  user_factors: jax.Array, item_factors: jax.Array,
) -> Params:  # fmt: skip
  """The posterior mean as one :class:`mfjax.Params`, exactly.

  Args:
    mean: the fixed mean rating.
    user_bias, item_bias: the biases averaged over the draws.
    user_factors, item_factors: the draws' factors, ``[S, n, k]``.

  Returns:
    Params of rank ``S·k`` whose ``p_u·q_i`` is the mean over the ``S`` draws of
    their ``p_u·q_i``: each draw's factors side by side, scaled by ``1/sqrt(S)``.
  """
  kept = user_factors.shape[0]
  scale = 1.0 / jnp.sqrt(jnp.float32(kept))

  def side_by_side(x):
    return scale * jnp.moveaxis(x, 0, 1).reshape(x.shape[1], -1)

  return Params(
    side_by_side(user_factors), side_by_side(item_factors), user_bias, item_bias,
    jnp.asarray(mean, jnp.float32),
  )  # fmt: skip


def sample(
  key: jax.Array,
  ratings: Ratings,
  *,
  rank: int,
  samples: int,
  burn_in: int,
  max_rank: int,
  hyper: Hyper = DEFAULT_HYPER,
  dense: bool | None = None,
  progress: Callable | None = None,
) -> SamplerResult:
  """Runs ``burn_in + samples`` sweeps in one ``lax.scan`` (traceable).

  The served model averages the ``samples`` draws after burn-in: their biases,
  and their factors' products ``P Qᵀ``. While ``samples·rank <= max_rank`` the
  draws' factors are kept and put side by side (:func:`posterior_params`,
  exact). Beyond, a :class:`Sketch` of the products' sum is kept instead, of
  width ``2·max_rank``, and the model is its rank-``max_rank`` truncated SVD
  (:func:`sketch_factors`): the posterior mean's spectrum falls fast (on
  MovieLens 100k, rank 32 of the 2000 of 200 draws predicts within 0.0001 RMSE),
  and the model stays small whatever the number of draws.

  Args:
    key: a PRNG key: the initial factors, every sweep's draws, the sketch.
    ratings: the training ratings (indices known, weights ``>= 0``).
    rank: factors per draw.
    samples: sweeps after burn-in, averaged.
    burn_in: sweeps discarded first.
    max_rank: bound on the served model's rank.
    hyper: the prior's constants.
    dense: the Gram layout (:func:`design`); None decides by size.
    progress: None, or ``(sweep, rmse) -> None`` called through
      ``jax.debug.callback`` after each sweep.

  Returns:
    A :class:`SamplerResult`.
  """
  n_users, n_items = ratings.n_users, ratings.n_items
  d = design(ratings, dense=dense)
  k_init, k_sweeps, k_sketch = jax.random.split(key, 3)
  state = init_state(k_init, n_users, n_items, rank, d.mean, hyper)
  exact = samples * rank <= max_rank
  if exact:
    factors = (
      jnp.zeros((samples, n_users, rank), jnp.float32),
      jnp.zeros((samples, n_items, rank), jnp.float32),
    )
  else:
    factors = sketch_init(k_sketch, n_users, n_items, 2 * max_rank)
  sums = (jnp.zeros(n_users, jnp.float32), jnp.zeros(n_items, jnp.float32))

  def step(carry, inputs):
    state, sums, factors = carry
    t, k = inputs
    state = sweep(k, d, state, hyper)
    p = state.params
    after = t >= burn_in
    sums = tuple(
      s + jnp.where(after, b, 0.0)
      for s, b in zip(sums, (p.user_bias, p.item_bias), strict=True)
    )
    if exact:
      slot = jnp.maximum(t - burn_in, 0)
      factors = tuple(
        buf.at[slot].set(jnp.where(after, f, buf[slot]))
        for buf, f in zip(factors, (p.user_factors, p.item_factors), strict=True)
      )
    else:
      uf = jnp.where(after, p.user_factors, 0.0)
      factors = sketch_add(factors, uf, p.item_factors)
    if progress is not None:
      jax.debug.callback(progress, t, state.rmse)
    return (state, sums, factors), (state.noise, state.rmse)

  total = burn_in + samples
  steps = (jnp.arange(total), jax.random.split(k_sweeps, total))
  (state, sums, factors), (noise, rmse) = jax.lax.scan(
    step, (state, sums, factors), steps
  )
  count = jnp.float32(samples)
  bias = (sums[0] / count, sums[1] / count)
  if exact:
    params = posterior_params(d.mean, *bias, *factors)
  else:
    uf, itf = sketch_factors(factors, count, max_rank)
    params = Params(uf, itf, *bias, d.mean)
  return SamplerResult(params, state, noise, rmse)
