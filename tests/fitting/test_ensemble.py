"""mfjax.fitting.ensemble: fit, FitSettings, FitResult, fit_program and
ensemble_params."""

import dataclasses
import inspect
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax.core import metrics, training
from mfjax.fitting import buckets, ensemble, plan
from mfjax.fitting.ensemble import FitSettings
from tests.conftest import planted_matrix, random_params

# batch_size 509: settings that no other test uses, so that fit has no program
# of them cached when this module starts (the compile counts below need that).
SETTINGS = FitSettings(
  rank=4, steps=30, learning_rate=0.02, l2=0.1, l2_bias=0.1, batch_size=509, ensemble=2
)


@pytest.fixture(scope="module")
def split():
  # A planted biased rank-3 model with noise 0.1; 120 x 80 at 60 %: ~5800 ratings.
  _, matrix, _ = planted_matrix(0, 120, 80, 3, 0.6)
  ratings = mfjax.ratings_from_dense(matrix)
  return mfjax.train_test_split(ratings, test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def fits(split):
  """Two fits of SETTINGS, other keys and l2; counting programs and traces."""
  programs, traces = [], []
  build, train = ensemble.fit_program, training.train

  def counting_fit_program(*args, **kwargs):
    programs.append(args)
    return build(*args, **kwargs)

  def counting_train(*args, **kwargs):
    traces.append(kwargs["steps"])
    return train(*args, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(ensemble, "fit_program", counting_fit_program)
    patch.setattr(training, "train", counting_train)
    first = mfjax.fit(jax.random.key(1), split[0], **SETTINGS._asdict())
    counts = [(len(programs), list(traces))]
    settings = SETTINGS._replace(l2=5.0, l2_bias=0.0)
    second = mfjax.fit(jax.random.key(3), split[0], **settings._asdict())
    counts.append((len(programs), list(traces)))
  return first, second, counts


@pytest.fixture(scope="module")
def fitted(fits):
  return fits[0]


@pytest.mark.slow
def test_fit_recovers_a_planted_model(split, fitted):
  _, test_set = split
  assert isinstance(fitted, mfjax.FitResult)
  assert fitted.best_params.user_factors.shape == (120, 8)  # ensemble · rank.
  assert fitted.members.losses.shape == (2, 30)
  assert fitted.members.best_params.user_factors.shape == (2, 120, 4)
  error = float(mfjax.rmse(fitted.best_params, test_set))
  assert error < 0.5 * float(jnp.std(test_set.values))


@pytest.mark.slow
def test_fit_is_fit_program_the_program_of_the_cli(split, fitted):
  program = ensemble.fit_program(SETTINGS)
  bucketed = buckets.pad_to_buckets(split[0])
  inputs = (
    jax.random.key(1), bucketed.ratings, jnp.float32(0.1), jnp.float32(0.1), None,
    None, bucketed.sizes,
  )  # fmt: skip
  # Compiled as fit and the CLI compile it (ensemble.compiler_options).
  outputs = ensemble.compile_program(program, inputs)(*inputs)
  members, params = buckets.trim(outputs, bucketed)
  chex.assert_trees_all_equal(fitted.best_params, params)
  chex.assert_trees_all_equal(fitted.members, members)
  # best_params is the merge of the members' best params.
  chex.assert_trees_all_equal(
    ensemble.ensemble_params(fitted.members.best_params), fitted.best_params
  )
  # The bucketed program trains as the unpadded one does (up to float rounding
  # of the weighted sums over more entries).
  unpadded = program(
    jax.random.key(1), split[0], jnp.float32(0.1), jnp.float32(0.1), None, None
  )
  chex.assert_trees_all_close(unpadded, (members, params), atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_fit_compiles_once_per_settings_not_per_l2_or_key(fits):
  first, second, counts = fits
  # One program built, traced once (train runs once per trace, under vmap).
  assert counts[0] == (1, [SETTINGS.steps])
  # Another key and other l2 weights: neither rebuilt nor retraced.
  assert counts[1] == (1, [SETTINGS.steps])
  assert not np.allclose(first.members.losses, second.members.losses)
  # The heavier penalty shrinks the factors: l2 did reach the program.
  norm = lambda fit: float(jnp.linalg.norm(fit.best_params.user_factors))
  assert norm(second) < norm(first)


@pytest.mark.slow
def test_fit_defaults_are_fit_settings():
  assert FitSettings._fields == (
    "rank",
    "steps",
    "learning_rate",
    "l2",
    "l2_bias",
    "batch_size",
    "ensemble",
  )
  # Settings left as None take FitSettings' values: the same fit as spelling
  # them out.
  defaults = {
    name: parameter.default
    for name, parameter in inspect.signature(mfjax.fit).parameters.items()
    if name in FitSettings._fields
  }
  assert defaults == dict.fromkeys(FitSettings._fields)
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 30, 20, 300, 2)
  implicit = mfjax.fit(jax.random.key(1), ratings)
  explicit = mfjax.fit(jax.random.key(1), ratings, **FitSettings()._asdict())
  chex.assert_trees_all_equal(implicit, explicit)
  assert implicit.members.losses.shape == (FitSettings().ensemble, FitSettings().steps)
  assert mfjax.FitSettings is FitSettings
  assert [f.name for f in dataclasses.fields(mfjax.FitResult)] == [
    "best_params",
    "members",
    "objective",
  ]


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(rank=0), ValueError, "rank must be an int >= 1"),
    (dict(steps=0), ValueError, "steps must be an int >= 1"),
    (dict(ensemble=1.5), TypeError, "ensemble must be an int"),
    (dict(batch_size=0), ValueError, "batch_size must be an int >= 1"),
    (dict(learning_rate=0.0), ValueError, "learning_rate must be finite and > 0"),
    (dict(learning_rate="0.1"), TypeError, "learning_rate must be a number"),
    (dict(l2=-1.0), ValueError, "l2 must be a finite number >= 0"),
    (dict(l2_bias=-1.0), ValueError, "l2_bias must be a finite number >= 0"),
    (dict(patience=0), ValueError, "patience must be an int >= 1"),
    # The 0.1 names: epochs= is steps=, seeds= is ensemble=.
    (dict(epochs=3), TypeError, "epochs"),
    (dict(seeds=2), TypeError, "seeds"),
  ],
)
def test_fit_bad_settings(kwargs, error, match):
  ratings = mfjax.ratings_from_dense(jnp.array([[5.0, 3.0], [4.0, 0.0]]))
  with pytest.raises(error, match=match):
    mfjax.fit(jax.random.key(0), ratings, **kwargs)


def test_fit_needs_ratings_and_a_key():
  ratings = mfjax.ratings_from_dense(jnp.array([[5.0, 3.0], [4.0, 0.0]]))
  with pytest.raises(TypeError, match="ratings must be mfjax.Ratings"):
    mfjax.fit(jax.random.key(0), jnp.ones((2, 2)))
  with pytest.raises(TypeError, match="key must be a single JAX PRNG key"):
    mfjax.fit(0, ratings)


@pytest.mark.slow
def test_ensemble_params_predict_the_average_of_the_models():
  models = [random_params(seed, 6, 5, 3, mean=3.0 + seed) for seed in range(3)]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *models)
  merged = ensemble.ensemble_params(stacked)
  assert type(merged) is mfjax.Params
  assert merged.user_factors.shape == (6, 9) and merged.item_factors.shape == (5, 9)
  each = np.mean([np.asarray(mfjax.predict(p)) for p in models], axis=0)
  np.testing.assert_allclose(mfjax.predict(merged), each, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(merged.mean, 4.0, rtol=1e-6)
  # One model is itself.
  one = ensemble.ensemble_params(jax.tree.map(lambda x: x[:1], stacked))
  chex.assert_trees_all_close(one, models[0], rtol=1e-6)


def test_ensemble_params_of_one_model_says_what_it_expects():
  with pytest.raises(ValueError, match="must be a stack of models"):
    ensemble.ensemble_params(random_params(0, 3, 4, 2))
  with pytest.raises(TypeError, match="must be mfjax.Params stacked"):
    ensemble.ensemble_params({"user_factors": np.zeros((2, 3, 2))})


@pytest.mark.slow
def test_numpy_scalar_settings_are_taken_as_python_numbers():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 30, 20, 300, 3)
  given = dict(rank=np.int64(2), steps=np.int32(2), ensemble=np.int64(2))
  numpy = mfjax.fit(
    jax.random.key(1), ratings, l2=np.float32(0.02), learning_rate=np.float64(0.01),
    **given,
  )  # fmt: skip
  python = mfjax.fit(
    jax.random.key(1), ratings, l2=0.02, learning_rate=0.01, rank=2, steps=2,
    ensemble=2,
  )  # fmt: skip
  chex.assert_trees_all_close(numpy.best_params, python.best_params, rtol=1e-6)


@pytest.mark.parametrize("n", [*range(1, 200), 943, 1650, 80000, 90570, 2**20 + 1])
def test_bucket_is_the_next_of_two_sizes_per_octave(n):
  size = buckets.bucket(n)
  assert size >= max(n, 8)
  assert size <= max(1.5 * n, 8)
  assert buckets.bucket(size) == size  # A bucket size is its own bucket...
  if n < 2000:  # ... and no smaller bucket size holds n.
    assert not any(buckets.bucket(b) == b for b in range(max(n, 8), size))
  fine = buckets.bucket(n, per_octave=4)
  assert max(n, 8) <= fine <= max(1.25 * n, 8) and fine <= size


def test_bucket_sizes_of_movielens_files():
  # u1-u5 (80,000 ratings) and ua/ub (90,570) share one program.
  assert buckets.bucket(80000) == buckets.bucket(90570) == 98304
  assert buckets.bucket(943, per_octave=4) == 1024
  assert (
    buckets.bucket(1650, per_octave=4) == buckets.bucket(1680, per_octave=4) == 1792
  )


@pytest.mark.slow
def test_two_sizes_in_one_bucket_fit_with_one_program_as_unpadded(split):
  settings = SETTINGS._replace(batch_size=511, steps=5)
  train = split[0]
  parts = [train, train.subset(np.arange(len(train) - 300))]
  traces = []
  original = training.train

  def counting_train(*args, **kwargs):
    traces.append(1)
    return original(*args, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(training, "train", counting_train)
    fits = [mfjax.fit(jax.random.key(4), part, **settings._asdict()) for part in parts]
  assert len(traces) == 1  # One trace, one compiled program, for both sizes.
  program = ensemble.fit_program(settings)
  for part, fitted in zip(parts, fits, strict=True):
    bucketed = buckets.pad_to_buckets(part)
    assert len(bucketed.ratings) == buckets.bucket(len(train))
    assert fitted.best_params.user_factors.shape == (part.n_users, 8)
    unpadded = program(
      jax.random.key(4), part, jnp.float32(0.1), jnp.float32(0.1), None, None
    )
    chex.assert_trees_all_close(
      (fitted.members, fitted.best_params), unpadded, rtol=1e-4, atol=2e-5
    )


@pytest.mark.slow
def test_pad_to_buckets_pads_with_weight_zero_and_keeps_the_data(split):
  train, valid = split
  bucketed = buckets.pad_to_buckets(train, valid)
  n = len(train)
  np.testing.assert_array_equal(bucketed.sizes, [n, train.n_users, train.n_items])
  padded = bucketed.ratings
  assert (padded.n_users, padded.n_items) == (128, 80)
  np.testing.assert_array_equal(padded.users[:n], train.users)
  np.testing.assert_array_equal(padded.values[:n], train.values)
  assert np.all(np.asarray(padded.weights[:n]) == 1)
  assert np.all(np.asarray(padded.weights[n:]) == 0)
  assert len(bucketed.validation) == buckets.bucket(len(valid))
  assert bucketed.validation.n_users == 128
  # The loss of any params is that of the unpadded ratings.
  params = random_params(0, 128, 80, 3)
  np.testing.assert_allclose(
    mfjax.loss(params, padded),
    mfjax.loss(params, mfjax.Ratings(train.users, train.items, train.values, 128, 80)),
    rtol=1e-5,
  )


@pytest.mark.slow
def test_the_default_batch_size_keeps_about_twenty_batches_an_epoch():
  assert FitSettings().batch_size == buckets.MIN_BATCH_SIZE == 4096
  assert buckets.batch_size_for(buckets.bucket(80000)) == 4096  # MovieLens 100k.
  assert buckets.batch_size_for(100) == buckets.MIN_BATCH_SIZE
  assert buckets.batch_size_for(100, minimum=64) == 64
  n = buckets.bucket(810_000)
  assert buckets.batch_size_for(n) == n // buckets.BATCHES_PER_EPOCH == 43690
  # fit, given no batch_size, takes it for the padded length: here 4096.
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 30, 20, 300, 2)
  settings = dict(rank=2, steps=2, ensemble=1)
  fitted = mfjax.fit(jax.random.key(0), ratings, **settings)
  given = mfjax.fit(jax.random.key(0), ratings, batch_size=4096, **settings)
  chex.assert_trees_all_equal(fitted, given)
  other = mfjax.fit(jax.random.key(0), ratings, batch_size=64, **settings)
  assert not np.allclose(fitted.members.losses, other.members.losses)


@pytest.mark.slow
def test_fit_given_no_batch_size_takes_batch_size_for_the_padded_length():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(1), 60, 40, 5000, 2)
  settings = dict(rank=2, steps=2, ensemble=1)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(buckets, "BATCHES_PER_EPOCH", 1)  # One batch of all 6,144.
    fitted = mfjax.fit(jax.random.key(0), ratings, **settings)
  whole = mfjax.fit(jax.random.key(0), ratings, batch_size=6144, **settings)
  chex.assert_trees_all_equal(fitted, whole)


@pytest.mark.slow
def test_fit_works_inside_jit_and_vmap_on_the_data_as_it_is():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 60, 40, 2000, 3)
  settings = dict(rank=3, steps=2, ensemble=1, batch_size=128)
  direct = mfjax.fit(jax.random.key(1), ratings, **settings)
  # Traced l2, traced ratings, vmapped keys: no host padding, the same fit.
  traced_l2 = jax.jit(
    lambda l2: mfjax.fit(jax.random.key(1), ratings, l2=l2, **settings)
  )
  chex.assert_trees_all_close(
    traced_l2(0.1), mfjax.fit(jax.random.key(1), ratings, l2=0.1, **settings),
    rtol=1e-4, atol=2e-5,
  )  # fmt: skip
  traced = jax.jit(lambda r: mfjax.fit(jax.random.key(1), r, **settings))(ratings)
  chex.assert_trees_all_close(traced, direct, rtol=1e-4, atol=2e-5)
  keys = jax.random.split(jax.random.key(2), 2)
  stacked = jax.vmap(lambda k: mfjax.fit(k, ratings, **settings))(keys)
  second = mfjax.fit(keys[1], ratings, **settings)
  chex.assert_trees_all_close(
    jax.tree.map(lambda x: x[1], stacked), second, rtol=1e-4, atol=2e-5
  )


def test_pad_entries_pads_with_weight_zero_and_refuses_shrinking(split):
  train = split[0]
  n = len(train)
  padded = buckets.pad_entries(train, n + 5, n_items=90)
  assert (len(padded), padded.n_users, padded.n_items) == (n + 5, 120, 90)
  np.testing.assert_array_equal(padded.weights, np.r_[np.ones(n), np.zeros(5)])
  np.testing.assert_array_equal(padded.values[:n], train.values)
  with pytest.raises(ValueError, match=f"at least the {n} entries"):
    buckets.pad_entries(train, n - 1)
  with pytest.raises(ValueError, match="n_users must be at least the ratings' 120"):
    buckets.pad_entries(train, n, n_users=100)


@pytest.mark.slow
def test_a_setting_of_the_other_objective_is_refused_by_name():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 20, 10, 200, 2)
  with pytest.raises(TypeError, match="'nu' is not a setting of solver='adam'"):
    plan.plan(jax.random.key(0), ratings, nu=1.0)
  with pytest.raises(ValueError, match="alpha0 applies to objective='ranking' only"):
    mfjax.fit(jax.random.key(0), ratings, alpha0=1.0)


@pytest.mark.slow
def test_fit_result_indexes_as_the_0_2_named_tuple():
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 20, 10, 200, 2)
  fitted = mfjax.fit(jax.random.key(0), ratings, rank=2, steps=1, ensemble=1)
  assert len(fitted) == 2
  assert fitted[0] is fitted.best_params and fitted[1] is fitted.members
  assert fitted[-1] is fitted.members


def test_a_rating_fit_of_one_rating_value_is_refused_with_the_ranking_advice():
  # Every "rating" 1 (check-ins, clicks): a rating model could only predict 1.
  users, items = jnp.array([0, 1, 2, 2]), jnp.array([0, 1, 0, 2])
  ones = mfjax.Ratings(users, items, jnp.ones(4), 3, 3)
  with pytest.raises(ValueError, match="every rating is 1, .* objective='ranking'"):
    mfjax.fit(jax.random.key(0), ones)
  with pytest.raises(ValueError, match="every rating is 1"):
    mfjax.fit(jax.random.key(0), ones, solver="gibbs")
  # The weighted entries count: a weight-0 rating of another value changes nothing.
  padded = mfjax.Ratings(users, items, jnp.array([1.0, 1.0, 1.0, 5.0]), 3, 3,
                         weights=jnp.array([1.0, 1.0, 1.0, 0.0]))  # fmt: skip
  with pytest.raises(ValueError, match="every rating is 1"):
    mfjax.fit(jax.random.key(0), padded)
  # Two values train; the ranking objective takes one value.
  two = mfjax.Ratings(users, items, jnp.array([1.0, 1.0, 1.0, 2.0]), 3, 3)
  assert mfjax.fit(jax.random.key(0), two, rank=2, steps=1, ensemble=1).members
  ranked = mfjax.fit(jax.random.key(0), ones, objective="ranking", rank=2, steps=1)
  assert np.all(np.isfinite(np.asarray(ranked.best_params.user_factors)))


@pytest.mark.slow  # benchmarks/fast_loop.py: faster tests run its lines.
def test_a_batch_larger_than_the_data_is_one_batch_of_the_data():
  # Issue 31: --batch-size 1e9 on 80k ratings asked XLA for 264 GB.
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 30, 20, 300, 2)
  fit_plan = plan.plan(jax.random.key(1), ratings, batch_size=10**9, ensemble=1)
  one_batch = max(len(fit_plan.inputs[1]), buckets.MIN_BATCH_SIZE)
  assert fit_plan.settings.batch_size == one_batch
  whole = plan.plan(jax.random.key(1), ratings, batch_size=one_batch, ensemble=1)
  assert whole.settings == fit_plan.settings
  big, _ = mfjax.synthetic_ratings(jax.random.key(0), 300, 200, 9000, 2)
  fit_plan = plan.plan(jax.random.key(1), big, batch_size=10**9, ensemble=1)
  assert fit_plan.settings.batch_size == len(fit_plan.inputs[1]) >= 9000


@pytest.mark.slow
# Counts weighed alike leave this tiny rank-2 model one dimension (fit warns so).
@pytest.mark.filterwarnings("ignore:the fitted factors keep 1 of their 2")
def test_a_ranking_fit_of_counts_is_the_same_under_jit_and_on_the_host():
  # The host decides "auto" (and reports it); under jit the program decides it
  # from the same values, with the same answer.
  stars, _ = mfjax.synthetic_ratings(jax.random.key(0), 30, 20, 300, 2)
  plays = dataclasses.replace(stars, values=jnp.round(stars.values**4))  # to 625
  fit = lambda r: mfjax.fit(jax.random.key(1), r, objective="ranking", rank=2, steps=2)
  chosen = plan.plan(jax.random.key(1), plays, objective="ranking", rank=2).settings
  assert (chosen.confidence_transform, chosen.confidence) == ("log", 0.0)
  on_host = fit(plays).best_params.user_factors
  under_jit = jax.jit(lambda r: fit(r).best_params.user_factors)(plays)
  np.testing.assert_allclose(under_jit, on_host, rtol=1e-5, atol=1e-6)
  linear = mfjax.fit(
    jax.random.key(1), plays, objective="ranking", rank=2, steps=2,
    confidence_transform="linear",
  ).best_params.user_factors  # fmt: skip
  assert np.abs(np.asarray(linear - on_host)).max() > 1e-3
  with pytest.raises(ValueError, match="confidence_transform must be 'auto'"):
    mfjax.fit(jax.random.key(1), plays, objective="ranking", confidence_transform="x")
  with pytest.raises(ValueError, match="confidence_transform applies to objective"):
    mfjax.fit(jax.random.key(1), plays, confidence_transform="log")


@pytest.mark.slow  # benchmarks/fast_loop.py: faster tests run its lines.
def test_a_ranking_fit_whose_l2_leaves_one_dimension_warns_and_the_default_does_not():
  # The frequency-scaled L2 shrinks whole dimensions to zero: a large one leaves
  # a model that gives every user nearly the same list.
  ratings, _ = mfjax.synthetic_ratings(jax.random.key(0), 60, 40, 1500, 3)
  fit = lambda **kw: mfjax.fit(
    jax.random.key(1), ratings, objective="ranking", rank=6, steps=4, **kw
  )
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # No warning at the default l2.
    kept = int(metrics.effective_rank(fit().best_params))
  assert kept > 1
  with pytest.warns(UserWarning, match=r"keep [01] of their 6 dimensions: the others"):
    collapsed = fit(l2=30.0)
  assert int(metrics.effective_rank(collapsed.best_params)) <= 1
  settings = plan.plan(
    jax.random.key(1), ratings, objective="ranking", rank=6, l2=30.0
  ).settings
  kept_now, note = plan.kept_rank(collapsed.best_params, settings, "--l2")
  assert (
    kept_now <= 1
    and "smaller --l2 keeps more (this fit's is 30, the default 0.01)" in note
  )
