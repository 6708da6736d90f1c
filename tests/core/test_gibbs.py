"""mfjax.core.gibbs: each draw against its closed form, the chain against an exact
posterior, the served model against the draws, keys, vmap, a long run."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax.core import gibbs, sketch
from tests.conftest import planted_matrix, random_params, random_ratings


def _weighted_ratings():
  ratings = random_ratings(3, n_users=6, n_items=5, n=30)  # Repeated pairs too.
  weights = np.random.default_rng(3).uniform(0.5, 2.0, len(ratings)).astype(np.float32)
  return mfjax.Ratings(
    ratings.users, ratings.items, ratings.values, 6, 5, weights=jnp.asarray(weights)
  )


def _unit_weighted(seed, *, n_users, n_items, n):
  """random_ratings with explicit weights of 1 (the weighted code paths)."""
  r = random_ratings(seed, n_users=n_users, n_items=n_items, n=n)
  return mfjax.Ratings(
    r.users, r.items, r.values, n_users, n_items, weights=jnp.ones(n)
  )


def _numpy_statistics(ratings, params, side):
  """Each row's Σ w z zᵀ and Σ w z (r - mean - offset), by a Python loop."""
  users, items, values = (np.asarray(x) for x in (ratings.users, ratings.items,
                                                  ratings.values))  # fmt: skip
  weights = np.asarray(ratings.weights)
  mean = np.sum(weights * values) / np.sum(weights)
  uf, itf = np.asarray(params.user_factors), np.asarray(params.item_factors)
  ub, ib = np.asarray(params.user_bias), np.asarray(params.item_bias)
  n = ratings.n_users if side == "user" else ratings.n_items
  d = uf.shape[1] + 1
  gram, rhs = np.zeros((n, d, d)), np.zeros((n, d))
  for u, i, r, w in zip(users, items, values, weights, strict=True):
    row, z, offset = (u, np.r_[1, itf[i]], ib[i]) if side == "user" else (
      i, np.r_[1, uf[u]], ub[u])  # fmt: skip
    gram[row] += w * np.outer(z, z)
    rhs[row] += w * z * (r - mean - offset)
  return gram, rhs


@pytest.mark.parametrize("side", ["user", "item"])
@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.slow
def test_side_statistics_match_a_numpy_loop(side, dense):
  ratings = _weighted_ratings()
  params = random_params(1, 6, 5, 3)
  d = gibbs.design(ratings, dense=dense)
  gram, rhs = gibbs.side_statistics(d, side, params)
  want_gram, want_rhs = _numpy_statistics(ratings, params, side)
  np.testing.assert_allclose(gram, want_gram, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(rhs, want_rhs, rtol=1e-5, atol=1e-4)


def test_one_conditional_draw_has_the_closed_form_mean_and_covariance():
  rng = np.random.default_rng(0)
  n, d = 3, 3
  a = rng.normal(size=(n, 6, d))
  gram = np.einsum("nij,nik->njk", a, a).astype(np.float32)
  rhs = rng.normal(size=(n, d)).astype(np.float32)
  prior = gibbs.Prior(jnp.asarray([0.5, -1.0, 2.0]), jnp.asarray([1.0, 3.0, 0.5]))
  noise = jnp.float32(2.0)

  def one(key):
    return gibbs.draw_rows(gibbs.Variates(key, n * d), gram, rhs, noise, prior)

  m = 40000
  draws = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), m)))
  for j in range(n):
    precision = 2.0 * gram[j] + np.diag(prior.precision)
    cov = np.linalg.inv(precision)
    mean = cov @ (2.0 * rhs[j] + np.asarray(prior.precision * prior.mean))
    se = np.sqrt(np.diag(cov) / m)
    assert np.all(np.abs(draws[:, j].mean(0) - mean) < 5 * se), (j, mean)
    # The sample covariance's error is about sqrt(2/m) of the scale.
    scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    atol = float(0.04 * scale.max())
    np.testing.assert_allclose(np.cov(draws[:, j].T), cov, atol=atol)


@pytest.mark.parametrize("shape", [0.4, 1.0, 2.5, 40.0, 4000.0])
@pytest.mark.slow
def test_gamma_draws_have_the_gamma_mean_and_variance(shape):
  m = 100_000
  variates = gibbs.Variates(jax.random.key(2), gibbs.gamma_count((m,)))
  x = np.asarray(gibbs.gamma(variates, shape, (m,)), np.float64)
  assert np.all(x > 0)
  se = np.sqrt(shape / m)
  assert abs(x.mean() - shape) < 5 * se
  # Var(x) = shape; its sample error is about sqrt((6 shape² /shape + 2 shape²)/m).
  assert abs(x.var() / shape - 1) < 5 * np.sqrt((6 / shape + 2) / m)


def test_variates_refuse_to_cut_more_than_they_hold():
  variates = gibbs.Variates(jax.random.key(0), 5)
  variates.normal((4,))
  with pytest.raises(ValueError, match="cannot give 2 more after 4"):
    variates.uniform((2,))


def test_gibbs_chain_averages_to_the_exact_posterior_of_a_conjugate_model():
  # Rank 0 with the noise and the priors held fixed: the model is linear in the
  # biases, r = mean + b_u + c_i + e, and its posterior is Gaussian in closed
  # form. Alternating the two sides' draws (draw_rows) must average to its mean.
  ratings = _unit_weighted(5, n_users=4, n_items=3, n=14)
  d = gibbs.design(ratings, dense=False)
  noise = jnp.float32(4.0)
  users_prior = gibbs.Prior(jnp.asarray([0.3]), jnp.asarray([2.0]))
  items_prior = gibbs.Prior(jnp.asarray([-0.2]), jnp.asarray([1.0]))
  empty = jnp.zeros((4, 0)), jnp.zeros((3, 0))
  params = mfjax.Params(*empty, jnp.zeros(4), jnp.zeros(3), d.mean)

  def step(params, key):
    k_user, k_item = jax.random.split(key)
    gram, rhs = gibbs.side_statistics(d, "user", params)
    users = gibbs.draw_rows(gibbs.Variates(k_user, 4), gram, rhs, noise, users_prior)
    params = params._replace(user_bias=users[:, 0])
    gram, rhs = gibbs.side_statistics(d, "item", params)
    items = gibbs.draw_rows(gibbs.Variates(k_item, 3), gram, rhs, noise, items_prior)
    params = params._replace(item_bias=items[:, 0])
    return params, jnp.concatenate([params.user_bias, params.item_bias])

  keys = jax.random.split(jax.random.key(7), 20000)
  _, chain = jax.jit(lambda k: jax.lax.scan(step, params, k))(keys)
  chain = np.asarray(chain)[200:]
  # The exact posterior: precision noise·XᵀX + diag(λ), X = [user | item one-hot].
  users, items = np.asarray(ratings.users), np.asarray(ratings.items)
  x = np.zeros((14, 7))
  x[np.arange(14), users] = 1
  x[np.arange(14), 4 + items] = 1
  y = np.asarray(ratings.values) - float(d.mean)
  lam = np.r_[np.full(4, 2.0), np.full(3, 1.0)]
  prior_mean = np.r_[np.full(4, 0.3), np.full(3, -0.2)]
  precision = 4.0 * x.T @ x + np.diag(lam)
  cov = np.linalg.inv(precision)
  mean = cov @ (4.0 * x.T @ y + lam * prior_mean)
  # Batch means: the chain's draws are correlated; 20 batches give its error.
  batches = chain[: len(chain) // 20 * 20].reshape(20, -1, 7).mean(1)
  se = batches.std(0, ddof=1) / np.sqrt(20)
  assert np.all(np.abs(chain.mean(0) - mean) < 5 * se + 1e-3), (chain.mean(0), mean)
  np.testing.assert_allclose(chain.var(0), np.diag(cov), rtol=0.1)


def _links_of(ratings, side):
  users, items, weights = ratings.users, ratings.items, ratings.weights
  if side == "user":
    return gibbs.links(users, items, weights, ratings.n_users, ratings.n_items)
  return gibbs.links(items, users, weights, ratings.n_items, ratings.n_users)


def _numpy_links(ratings):
  """W[u, j] = 1/sqrt(|N(u)|) over the items u rated, by a loop."""
  w = np.zeros((ratings.n_users, ratings.n_items))
  for u, i in zip(np.asarray(ratings.users), np.asarray(ratings.items), strict=True):
    w[u, i] += 1.0
  count = np.bincount(np.asarray(ratings.users), minlength=ratings.n_users)
  return w / np.sqrt(np.maximum(count, 1))[:, None]


@pytest.mark.parametrize("block", [2, 4096])  # WᵀW summed over 3 blocks, or 1.
def test_links_weigh_each_rated_item_by_one_over_the_root_of_the_count(
  block, monkeypatch
):
  monkeypatch.setattr(gibbs, "LINK_BLOCK", block)
  ratings = _unit_weighted(11, n_users=5, n_items=4, n=12)
  links = _links_of(ratings, "user")
  w = _numpy_links(ratings)
  factors = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
  np.testing.assert_allclose(
    gibbs.implicit_shift(links, jnp.asarray(factors), 5), w @ factors, rtol=1e-5,
    atol=1e-6,
  )  # fmt: skip
  basis, spectrum = np.asarray(links.basis), np.asarray(links.spectrum)
  np.testing.assert_allclose(basis * spectrum @ basis.T, w.T @ w, atol=1e-5)


def test_one_implicit_draw_has_the_closed_form_mean_and_covariance():
  ratings = _unit_weighted(12, n_users=5, n_items=3, n=9)
  links = _links_of(ratings, "user")
  w = _numpy_links(ratings)
  residual = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
  row_precision = jnp.asarray([2.0, 0.5])
  prior = gibbs.Prior(jnp.asarray([0.4, -0.3]), jnp.asarray([1.5, 3.0]))

  def one(key):
    variates = gibbs.Variates(key, 3 * 2)
    return gibbs.draw_implicit(variates, links, residual, row_precision, prior)

  m = 40000
  draws = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(3), m)))
  for f in range(2):
    lam, tau = float(row_precision[f]), float(prior.precision[f])
    cov = np.linalg.inv(lam * w.T @ w + tau * np.eye(3))
    mean = cov @ (lam * w.T @ residual[:, f] + tau * float(prior.mean[f]))
    se = np.sqrt(np.diag(cov) / m)
    assert np.all(np.abs(draws[:, :, f].mean(0) - mean) < 5 * se), (f, mean)
    atol = float(0.04 * np.diag(cov).max())
    np.testing.assert_allclose(np.cov(draws[:, :, f].T), cov, atol=atol)


@pytest.mark.slow
def test_an_implicit_chain_averages_to_the_exact_posterior():
  # Rank 0, noise and priors fixed, the users' implicit term on: a user's bias
  # is b_u = a_u + Σ_j W_uj y_j, so r - mean = a_u + W_u y + c_i is linear in
  # (a, c, y), Gaussian in closed form. The sampler draws b (not a) given y,
  # then y given b: its averages of b and c must be the exact posterior's.
  n_users, n_items, n = 4, 3, 12
  ratings = _unit_weighted(13, n_users=n_users, n_items=n_items, n=n)
  d = gibbs.design(ratings, dense=False, implicit="users")
  noise = jnp.float32(4.0)
  users_prior = gibbs.Prior(jnp.asarray([0.3]), jnp.asarray([2.0]))
  items_prior = gibbs.Prior(jnp.asarray([-0.2]), jnp.asarray([1.0]))
  y_prior = gibbs.Prior(jnp.asarray([0.1]), jnp.asarray([1.5]))
  empty = jnp.zeros((n_users, 0)), jnp.zeros((n_items, 0))
  params = mfjax.Params(*empty, jnp.zeros(n_users), jnp.zeros(n_items), d.mean)
  links = d.user_links

  def step(carry, key):
    params, y = carry
    k_user, k_y, k_item = jax.random.split(key, 3)
    gram, rhs = gibbs.side_statistics(d, "user", params)
    shift = gibbs.implicit_shift(links, y, n_users)
    users = gibbs.draw_rows(gibbs.Variates(k_user, n_users), gram, rhs, noise,
                            users_prior, shift)  # fmt: skip
    residual = users - users_prior.mean[None]
    y = gibbs.draw_implicit(gibbs.Variates(k_y, n_items), links, residual,
                            users_prior.precision, y_prior)  # fmt: skip
    params = params._replace(user_bias=users[:, 0])
    gram, rhs = gibbs.side_statistics(d, "item", params)
    items = gibbs.draw_rows(gibbs.Variates(k_item, n_items), gram, rhs, noise,
                            items_prior)  # fmt: skip
    params = params._replace(item_bias=items[:, 0])
    return (params, y), jnp.concatenate([params.user_bias, params.item_bias])

  keys = jax.random.split(jax.random.key(8), 40000)
  start = (params, jnp.zeros((n_items, 1)))
  _, chain = jax.jit(lambda k: jax.lax.scan(step, start, k))(keys)
  chain = np.asarray(chain)[500:]
  users, items = np.asarray(ratings.users), np.asarray(ratings.items)
  w = _numpy_links(ratings)
  # θ = [a (users), c (items), y (items)]; a rating's row [e_u | e_i | W_u].
  x = np.zeros((n, n_users + 2 * n_items))
  x[np.arange(n), users] = 1
  x[np.arange(n), n_users + items] = 1
  x[:, n_users + n_items :] = w[users]
  y_values = np.asarray(ratings.values) - float(d.mean)
  lam = np.r_[np.full(n_users, 2.0), np.full(n_items, 1.0), np.full(n_items, 1.5)]
  prior_mean = np.r_[np.full(n_users, 0.3), np.full(n_items, -0.2),
                     np.full(n_items, 0.1)]  # fmt: skip
  cov = np.linalg.inv(4.0 * x.T @ x + np.diag(lam))
  theta = cov @ (4.0 * x.T @ y_values + lam * prior_mean)
  # (b, c) = T θ: b = a + W y, c = c.
  t = np.zeros((n_users + n_items, n_users + 2 * n_items))
  t[:n_users, :n_users] = np.eye(n_users)
  t[:n_users, n_users + n_items :] = w
  t[n_users:, n_users : n_users + n_items] = np.eye(n_items)
  mean, var = t @ theta, np.diag(t @ cov @ t.T)
  batches = chain[: len(chain) // 20 * 20].reshape(20, -1, chain.shape[1]).mean(1)
  se = batches.std(0, ddof=1) / np.sqrt(20)
  assert np.all(np.abs(chain.mean(0) - mean) < 5 * se + 1e-3), (chain.mean(0), mean)
  np.testing.assert_allclose(chain.var(0), var, rtol=0.1)


@pytest.mark.parametrize("implicit", ["users", "items", "both"])
@pytest.mark.slow
def test_the_sampler_with_implicit_terms_recovers_a_planted_model(implicit):
  full, matrix, observed = planted_matrix(0, 80, 60, 3, 0.5, noise=0.1)
  ratings = mfjax.ratings_from_dense(matrix)
  kw = dict(rank=5, samples=60, burn_in=20, max_rank=32, implicit=implicit)
  result = jax.jit(lambda k: gibbs.sample(k, ratings, **kw))(jax.random.key(0))
  predicted = np.asarray(mfjax.predict(result.params))
  error = np.sqrt(np.mean((predicted[~observed] - full[~observed]) ** 2))
  assert error < 0.2, error
  term = (
    result.state.user_implicit if implicit != "items" else result.state.item_implicit
  )
  assert term is not None and np.all(np.isfinite(term.factors))


@pytest.mark.parametrize(
  ("implicit", "shape", "match"),
  [
    ("all", (5, 5), "implicit must be one of 'none', 'users'"),
    ("users", (3, gibbs.IMPLICIT_MAX + 1), "users' implicit term .* 8,193 items"),
    ("both", (gibbs.IMPLICIT_MAX + 1, 3), "items' implicit term .* 8,193 users"),
  ],
)
def test_implicit_terms_refuse_what_they_cannot_hold(implicit, shape, match):
  with pytest.raises(ValueError, match=match):
    gibbs.check_implicit(implicit, *shape)


def test_posterior_params_predict_the_mean_of_the_draws_predictions():
  rng = np.random.default_rng(4)
  s, n_users, n_items, k = 5, 6, 7, 3
  uf = rng.normal(size=(s, n_users, k)).astype(np.float32)
  itf = rng.normal(size=(s, n_items, k)).astype(np.float32)
  ub = rng.normal(size=(s, n_users)).astype(np.float32)
  ib = rng.normal(size=(s, n_items)).astype(np.float32)
  params = gibbs.posterior_params(3.0, ub.mean(0), ib.mean(0), uf, itf)
  assert params.user_factors.shape == (n_users, s * k)
  mean = jnp.float32(3.0)
  draws = [mfjax.Params(uf[t], itf[t], ub[t], ib[t], mean) for t in range(s)]
  want = np.mean([mfjax.predict(p) for p in draws], axis=0)
  np.testing.assert_allclose(mfjax.predict(params), want, rtol=1e-5, atol=1e-5)


def test_sketch_recovers_the_best_low_rank_approximation():
  rng = np.random.default_rng(5)
  n_users, n_items, k, s = 60, 45, 4, 30
  # Draws around a rank-3 matrix: their mean has a fast-falling spectrum.
  base_u, base_i = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
  state = sketch.sketch_init(jax.random.key(0), n_users, n_items, 2 * 8)
  total = np.zeros((n_users, n_items))
  for _ in range(s):
    u = np.c_[base_u, 0.3 * rng.normal(size=(n_users, k - 3))].astype(np.float32)
    i = np.c_[base_i, 0.3 * rng.normal(size=(n_items, k - 3))].astype(np.float32)
    state = sketch.sketch_add(state, jnp.asarray(u), jnp.asarray(i))
    total += u.astype(np.float64) @ i.T
  mean = total / s
  left, right = sketch.sketch_factors(state, jnp.float32(s), 8)
  assert left.shape == (n_users, 8) and right.shape == (n_items, 8)
  approx = np.asarray(left) @ np.asarray(right).T
  u_, values, vt = np.linalg.svd(mean)
  best = (u_[:, :8] * values[:8]) @ vt[:8]
  error, optimal = np.linalg.norm(approx - mean), np.linalg.norm(best - mean)
  # Within a small factor of the optimum (Tropp et al. 2017 bound the sketch's
  # error by sqrt(1 + r/(width - r - 1)) times the tail before truncating), and
  # far below the matrix: the rank-3 signal is kept.
  assert error <= 2 * optimal, (error, optimal)
  assert error < 0.02 * np.linalg.norm(mean)


@pytest.mark.slow
def test_sketch_path_equals_the_exact_path_when_it_spans_the_matrix():
  ratings = random_ratings(6, n_users=12, n_items=9, n=60)
  kw = dict(rank=2, samples=10, burn_in=3)
  exact = gibbs.sample(jax.random.key(3), ratings, max_rank=20, **kw)  # 10·2 <= 20
  sketched = gibbs.sample(jax.random.key(3), ratings, max_rank=9, **kw)
  assert exact.params.user_factors.shape == (12, 20)
  assert sketched.params.user_factors.shape == (12, 9)
  np.testing.assert_allclose(
    mfjax.predict(sketched.params), mfjax.predict(exact.params), atol=2e-4
  )


def test_a_run_is_a_pure_function_of_its_key():
  ratings = random_ratings(7)
  run = jax.jit(
    lambda key: gibbs.sample(key, ratings, rank=2, samples=6, burn_in=2, max_rank=8)
  )
  a, b = run(jax.random.key(1)), run(jax.random.key(1))
  c = run(jax.random.key(2))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
  assert not np.allclose(a.params.user_factors, c.params.user_factors)


@pytest.mark.slow
def test_chains_under_vmap_equal_the_chains_run_one_by_one():
  ratings = random_ratings(8)

  def run(key):
    return gibbs.sample(key, ratings, rank=2, samples=5, burn_in=1, max_rank=16)

  keys = jax.random.split(jax.random.key(4), 3)
  together = jax.jit(jax.vmap(run))(keys)
  for j in range(3):
    alone = jax.jit(run)(keys[j])
    np.testing.assert_allclose(
      together.params.user_factors[j], alone.params.user_factors, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(together.rmse[j], alone.rmse, rtol=1e-5)


@pytest.mark.slow
def test_dense_and_sparse_layouts_sample_the_same_chain():
  ratings = random_ratings(9)
  kw = dict(rank=2, samples=4, burn_in=1, max_rank=8)
  dense = gibbs.sample(jax.random.key(0), ratings, dense=True, **kw)
  sparse = gibbs.sample(jax.random.key(0), ratings, dense=False, **kw)
  np.testing.assert_allclose(dense.rmse, sparse.rmse, rtol=1e-4)
  np.testing.assert_allclose(
    mfjax.predict(dense.params), mfjax.predict(sparse.params), rtol=1e-4, atol=1e-4
  )


@pytest.mark.slow
def test_the_sampler_recovers_a_planted_model():
  full, matrix, observed = planted_matrix(0, 80, 60, 3, 0.5, noise=0.1)
  ratings = mfjax.ratings_from_dense(matrix)
  result = jax.jit(
    lambda k: gibbs.sample(k, ratings, rank=5, samples=60, burn_in=20, max_rank=32)
  )(jax.random.key(0))
  predicted = np.asarray(mfjax.predict(result.params))
  held_out = ~observed
  error = np.sqrt(np.mean((predicted[held_out] - full[held_out]) ** 2))
  baseline = np.sqrt(np.mean((full[held_out] - full[observed].mean()) ** 2))
  assert error < 0.2 < baseline, (error, baseline)
  # The noise precision settles near 1/0.1² = 100.
  assert 50 < float(np.median(result.noise[20:])) < 200


@pytest.mark.slow  # ~10 s: a 400-sweep run on a MovieLens-sized matrix.
def test_a_400_sweep_run_finishes(tmp_path):
  # A sketch of ours hung inside a long scan (issue 27); this runs one in a
  # child process under a timeout, so that a hang fails instead of waiting.
  script = textwrap.dedent(
    """
    import jax, numpy as np, mfjax
    from mfjax.core import gibbs
    ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 943, 1682, 80000, 5)
    result = jax.jit(lambda k: gibbs.sample(
      k, ratings, rank=10, samples=380, burn_in=20, max_rank=64))(jax.random.key(1))
    assert np.all(np.isfinite(np.asarray(result.rmse))) and len(result.rmse) == 400
    print("done", float(result.rmse[-1]))
    """
  )
  done = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, timeout=240
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.startswith("done")
