"""Raw ids in and out (mfjax.serving.model: Model's methods) against the
index-based API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjax
from mfjax.serving import model as serving_model
from tests.conftest import random_params

# Raw ids on purpose unlike indices: strings for users, spread ints for items.
USERS = np.array(["ann", "bob", "cat", "dan", "eve"])
ITEMS = np.array([10, 20, 30, 40, 50, 60, 70], np.int64)
# (user index, item index, rating) of the training data.
TRAIN = [(0, 0, 5.0), (0, 3, 4.0), (1, 3, 2.0), (2, 0, 3.0), (2, 6, 5.0), (4, 3, 1.0)]


def _train():
  u, i, r = (np.array(c) for c in zip(*TRAIN, strict=True))
  return mfjax.Ratings(
    jnp.asarray(u), jnp.asarray(i), jnp.asarray(r, jnp.float32), 5, 7
  )


def _model(**fields):
  maps = mfjax.IdMaps(users=USERS, items=ITEMS, scale=(1.0, 5.0))
  defaults = dict(params=random_params(0, 5, 7, 3), id_maps=maps)
  defaults["rated"] = serving_model.rated_pairs(_train())
  return mfjax.Model(**(defaults | fields))


def test_rated_pairs_leave_out_padding_and_unknown_ids():
  ratings = mfjax.Ratings(
    jnp.array([0, -1, 2, 3]),
    jnp.array([1, 1, -1, 4]),
    jnp.ones(4),
    5,
    7,
    weights=jnp.array([1.0, 1.0, 1.0, 0.0]),
  )
  np.testing.assert_array_equal(serving_model.rated_pairs(ratings), [[0, 1]])
  assert serving_model.rated_pairs(ratings).dtype == np.int32


def test_predict_takes_raw_ids_and_matches_index_predictions():
  m = _model()
  expected = mfjax.predict(m.params, users=[1, 4, 0], items=[6, 0, 2], scale=(1, 5))
  got = m.predict(["bob", "eve", "ann"], [70, 10, 30])
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  # One id pairs with every id of the other; two single ids give a float.
  np.testing.assert_allclose(
    m.predict("cat", ITEMS), mfjax.predict(m.params, users=[2], scale=(1, 5))[0]
  )
  assert isinstance(m.predict("cat", 40), float)
  # Unknown ids fall back to the mean and the known bias, as predict's -1 does.
  fallback = mfjax.predict(m.params, users=[-1, 1], items=[2, -1], scale=(1, 5))
  np.testing.assert_allclose(m.predict(["zed", "bob"], [30, 99]), fallback, rtol=1e-6)


def test_recommend_matches_index_recommend_without_the_rated_items():
  m = _model()
  exclude = _train()
  for j, user in enumerate(USERS):
    items, scores = mfjax.recommend(m.params, j, 3, exclude=exclude)
    got_items, got_scores = m.recommend(user, 3, popularity_weight=0)
    np.testing.assert_array_equal(got_items, ITEMS[np.asarray(items)])
    np.testing.assert_allclose(got_scores, scores, rtol=1e-6)
  # Without exclusion, the plain top 3.
  items, _ = mfjax.recommend(m.params, 0, 3)
  np.testing.assert_array_equal(
    m.recommend("ann", 3, exclude_rated=False, popularity_weight=0.0)[0],
    ITEMS[np.asarray(items)],
  )
  # Fewer items left than asked: only the real ones come back.
  assert len(m.recommend("ann", 7)[0]) == 5


def test_recommend_falls_back_to_the_most_rated_items_for_an_unknown_user():
  m = _model()
  items, counts = m.recommend("zed", 3)
  # Item 40 (index 3) has 3 ratings, 10 (index 0) has 2, then 70 (index 6) 1;
  # ties go to the lower index.
  np.testing.assert_array_equal(items, [40, 10, 70])
  np.testing.assert_array_equal(counts, [3, 2, 1])
  with pytest.raises(ValueError, match="user 'zed' is not in the model"):
    m.recommend("zed", 3, fallback=None)
  with pytest.raises(ValueError, match="needs the training pairs"):
    m._replace(rated=None).recommend("zed", 3)
  with pytest.raises(ValueError, match="fallback"):
    m.recommend("ann", 3, fallback="random")


def test_similar_items_are_the_nearest_by_cosine_against_numpy():
  m = _model()
  q = np.asarray(m.params.item_factors, np.float64)
  cosine = q @ q[2] / (np.linalg.norm(q, axis=1) * np.linalg.norm(q[2]))
  order = [j for j in np.argsort(-cosine) if j != 2][:4]
  items, sims = m.similar_items(30, 4)
  np.testing.assert_array_equal(items, ITEMS[order])
  np.testing.assert_allclose(sims, cosine[order], rtol=1e-6)
  with pytest.raises(ValueError, match="item 99 is not in the model"):
    m.similar_items(99)
  with pytest.raises(ValueError, match="at most the model's 6 other items"):
    m.similar_items(30, 7)


@pytest.mark.slow
def test_fold_in_adds_new_users_as_the_index_fold_in_does():
  m = _model(settings={"l2": 2.0, "l2_bias": 0.5})
  folded = m.fold_in(["bea", "bea", "fay"], [20, 70, 10], [5.0, 4.0, 2.0])
  new = mfjax.Ratings(
    jnp.array([0, 0, 1]), jnp.array([1, 6, 0]), jnp.array([5.0, 4.0, 2.0]), 2, 7
  )
  reference = mfjax.fold_in(m.params, new, l2=2.0, l2_bias=0.5)
  assert list(folded.id_maps.users) == ["ann", "bea", "bob", "cat", "dan", "eve", "fay"]
  # The old users keep their rows; the new ones have the fold-in's.
  p = np.asarray(folded.params.user_factors)
  np.testing.assert_array_equal(p[[0, 2, 3, 4, 5]], np.asarray(m.params.user_factors))
  np.testing.assert_allclose(p[[1, 6]], reference.user_factors, rtol=1e-5)
  np.testing.assert_allclose(
    folded.params.user_bias[np.array([1, 6])], reference.user_bias, rtol=1e-5
  )
  # Predictions of old users do not change; the new user's rated items are left out.
  np.testing.assert_allclose(folded.predict("eve", ITEMS), m.predict("eve", ITEMS))
  assert not {20, 70} & set(folded.recommend("bea", 5)[0].tolist())
  assert len(folded.rated) == len(m.rated) + 3


@pytest.mark.parametrize(
  "args, error, match",
  [
    ((["ann"], [10], [3.0]), ValueError, "'ann' is already in the model"),
    ((["new"], [99], [3.0]), ValueError, "item 99 is not in the model"),
    ((["new"], [10], [np.nan]), ValueError, "ratings must be finite"),
    ((["new", "x"], [10], [3.0]), ValueError, "one length"),
    ((["new"], [10], ["a"]), TypeError, "ratings must be 1-D numbers"),
  ],
)
def test_fold_in_refuses_bad_input(args, error, match):
  with pytest.raises(error, match=match):
    _model().fold_in(*args)


def test_ranking_models_and_models_without_maps_say_what_applies():
  ranking = _model(objective="ranking")
  with pytest.raises(ValueError, match="ranking model: its scores order items"):
    ranking.predict("ann", 10)
  with pytest.raises(ValueError, match="ranking model has no biases"):
    ranking.fold_in(["new"], [10], [3.0], l2_bias=1.0)
  assert len(ranking.recommend("ann", 2)[0]) == 2  # Lists are what it is for.
  bare = mfjax.Model(random_params(0, 5, 7, 3))
  with pytest.raises(ValueError, match="no raw-id maps"):
    bare.recommend(0)


def test_a_model_without_training_pairs_refuses_to_exclude_them():
  m = _model()._replace(rated=None)
  with pytest.raises(ValueError, match="no training pairs .* exclude_rated=False"):
    m.recommend("ann", 3)
  items, _ = mfjax.recommend(m.params, 0, 3)
  np.testing.assert_array_equal(
    m.recommend("ann", 3, exclude_rated=False)[0], ITEMS[np.asarray(items)]
  )


@pytest.mark.parametrize("objective", ["rating", "ranking"])
@pytest.mark.slow
def test_fit_result_model_carries_objective_maps_and_training_pairs(objective):
  train, maps = mfjax.ratings_from_arrays(
    ["ann", "ann", "bob", "bob", "cat", "cat"],
    [10, 20, 10, 30, 20, 30],
    [5.0, 3.0, 4.0, 1.0, 2.0, 5.0],
  )
  fitted = mfjax.fit(jax.random.key(0), train, objective=objective, rank=2, steps=2)
  assert fitted.objective == objective
  model = fitted.model(train, maps)
  assert model.objective == objective and model.id_maps is maps
  np.testing.assert_array_equal(model.rated, serving_model.rated_pairs(train))
  items, _ = model.recommend("ann", 1)  # ann rated 10 and 20: 30 is left.
  np.testing.assert_array_equal(items, [30])
  if objective == "ranking":
    with pytest.raises(ValueError, match="ranking model"):
      model.predict("ann", 30)
  params, members = fitted  # 0.2's unpacking still works.
  assert params is fitted.best_params and members is fitted.members


@pytest.mark.slow
def test_fit_result_model_checks_its_ratings_and_maps():
  train, maps = mfjax.ratings_from_arrays([1, 2, 2], [7, 7, 8], [4.0, 2.0, 5.0])
  fitted = mfjax.fit(jax.random.key(0), train, rank=2, ensemble=1, steps=1)
  other, other_maps = mfjax.ratings_from_arrays([1, 2, 3], [7, 7, 8], [4.0, 2.0, 5.0])
  with pytest.raises(ValueError, match="the fit's training ratings, 2 users x 2"):
    fitted.model(other)
  with pytest.raises(ValueError, match="id_maps must map the fit's 2 users"):
    fitted.model(train, other_maps)
  jitted = jax.jit(lambda r: fitted.model(r))
  with pytest.raises(TypeError, match="ratings is traced"):
    jitted(train)


def test_rated_pairs_survive_save_and_load(tmp_path):
  m = _model()
  mfjax.save(tmp_path / "m.npz", m)
  loaded = mfjax.load(tmp_path / "m.npz")
  np.testing.assert_array_equal(loaded.rated, m.rated)
  np.testing.assert_array_equal(loaded.recommend("cat", 4)[0], m.recommend("cat", 4)[0])
  with pytest.raises(ValueError, match="model.rated must hold user indices < 5"):
    mfjax.save(tmp_path / "bad.npz", m._replace(rated=np.array([[5, 0]])))


@pytest.mark.slow
def test_the_0_2_names_n_and_the_rawids_functions_still_work_with_a_warning():
  m = _model()
  with pytest.warns(DeprecationWarning, match="Model.recommend: 'n' is now 'k'"):
    old = m.recommend("ann", n=2)
  np.testing.assert_array_equal(old[0], m.recommend("ann", k=2)[0])
  with pytest.warns(DeprecationWarning, match="Model.similar_items: 'n' is now 'k'"):
    old = m.similar_items(10, n=2)
  np.testing.assert_array_equal(old[0], m.similar_items(10, 2)[0])
  with pytest.raises(TypeError, match="give 'k' only"):
    m.recommend("ann", 2, n=2)
  import mfjax.rawids as rawids  # The 0.2 module: each name warns.

  with pytest.warns(DeprecationWarning):
    items, _ = rawids.recommend_ids(m, "ann", 2)
  np.testing.assert_array_equal(items, m.recommend("ann", 2)[0])
  with pytest.warns(DeprecationWarning):
    assert rawids.predict_ids(m, "ann", 10) == m.predict("ann", 10)
  with pytest.warns(DeprecationWarning):
    params, maps, rated = rawids.fold_in_ids(m, ["new"], [10], [4.0])
  folded = m.fold_in(["new"], [10], [4.0])
  np.testing.assert_array_equal(params.user_factors, folded.params.user_factors)
  np.testing.assert_array_equal(maps.users, folded.id_maps.users)
  np.testing.assert_array_equal(rated, folded.rated)


@pytest.mark.slow
def test_a_model_of_no_users_predicts_the_fallback_and_folds_in(tmp_path):
  # Issue 31: an IndexError (and an XLA gather error) came out of every call.
  params = random_params(0, 1, 3, 2)
  params = params._replace(
    user_factors=params.user_factors[:0], user_bias=params.user_bias[:0]
  )
  maps = mfjax.IdMaps(np.array([], np.int64), np.array([10, 11, 12]), (1.0, 5.0))
  model = mfjax.Model(params, maps, rated=np.zeros((0, 2), np.int32))
  item_bias = np.asarray(params.item_bias)
  expected = np.clip(float(params.mean) + item_bias[[0, 2]], 1.0, 5.0)
  np.testing.assert_allclose(model.predict([7, 8], [10, 12]), expected, rtol=1e-6)
  assert mfjax.predict(params).shape == (0, 3)
  with pytest.raises(ValueError, match="not in the model"):
    model.recommend(7, 2, fallback=None)
  folded = model.fold_in([5, 5], [10, 11], [4.0, 2.0])
  assert len(folded.id_maps.users) == 1
  items, _ = folded.recommend(5, 1)
  assert items.tolist() == [12]  # The one item user 5 did not rate.


@pytest.mark.parametrize(
  "user, error, match",
  [
    (None, TypeError, "got NoneType None"),  # Issue 31: answered 3.885.
    ({}, TypeError, "got dict"),
    ([1, None], TypeError, "got NoneType"),
    (float("nan"), ValueError, "NaN: a missing id"),
    (np.array([1.0, np.nan]), ValueError, "NaN: a missing id"),
  ],
)
def test_predict_refuses_what_is_not_an_id(user, error, match):
  params = random_params(0, 2, 2, 2)
  maps = mfjax.IdMaps(np.array([1, 2]), np.array([10, 11]), (1.0, 5.0))
  model = mfjax.Model(params, maps)
  with pytest.raises(error, match=match):
    model.predict(user, 10)
  with pytest.raises(error, match=match):
    model.predict(10 if np.ndim(user) == 0 else [1, 2], user)  # As items too.


def test_a_rating_models_list_adds_popularity_and_gives_predicted_ratings():
  m = _model()
  counts = np.bincount([i for _, i, _ in TRAIN], minlength=7)  # [2, 0, 0, 3, ...]
  for weight in (None, 0.5, 2.0):
    w = serving_model.POPULARITY_WEIGHT if weight is None else weight
    bonus = w * 4.0 * np.log1p(counts)  # The scale 1..5 is 4 wide.
    np.testing.assert_allclose(serving_model.popularity_bonus(m, weight), bonus)
    ordered = m.params._replace(item_bias=m.params.item_bias + bonus)
    for j, user in enumerate(USERS):
      top, _ = mfjax.recommend(ordered, j, 3, exclude=_train())
      items, scores = m.recommend(user, 3, popularity_weight=weight)
      np.testing.assert_array_equal(items, ITEMS[np.asarray(top)])
      predicted = mfjax.predict(m.params, users=[j] * 3, items=np.asarray(top))
      np.testing.assert_allclose(scores, predicted, rtol=1e-5, atol=1e-5)
  # Nothing to add: no pairs or no scale at the default; refused when asked.
  bare = _model(rated=None)
  assert serving_model.popularity_bonus(bare) is None
  with pytest.raises(ValueError, match="needs the model's training pairs"):
    serving_model.popularity_bonus(bare, 0.5)
  unscaled = _model(id_maps=mfjax.IdMaps(users=USERS, items=ITEMS, scale=None))
  assert serving_model.popularity_bonus(unscaled) is None
  with pytest.raises(ValueError, match="needs the model's rating scale"):
    unscaled.recommend("ann", 3, popularity_weight=1.0)
  ranker = _model(objective="ranking")
  assert serving_model.popularity_bonus(ranker) is None
  with pytest.raises(ValueError, match="applies to rating models"):
    ranker.recommend("ann", 3, popularity_weight=0.5)
  with pytest.raises(ValueError, match="applies to rating models"):
    ranker.recommend("nobody", 3, popularity_weight=0.5)  # The fallback too.
  with pytest.raises(ValueError, match="popularity_weight"):
    m.recommend("ann", 3, popularity_weight=-1.0)
