"""A trained model used through raw ids: :class:`Model` and its methods.

A :class:`Model` (what :func:`mfjax.load` returns and ``mfjax fit --save``
writes) holds the params, the raw-id maps, the objective and, optionally, the
training pairs. Its methods translate raw user and item ids (any type the maps
hold) to indices, call the index-based API (:func:`mfjax.predict`,
:func:`mfjax.recommend`, :func:`mfjax.fold_in`) and translate the answers back.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from mfjax import validation
from mfjax.core import model as model_lib
from mfjax.core import objectives
from mfjax.deprecation import renamed, renamed_argument
from mfjax.serving import topk
from mfjax.settings import FitSettings, RankingSettings
from mfjax.types import UNKNOWN, IdMaps, Params, Ratings

__all__ = [
  "Model",
  "OBJECTIVES",
  "FALLBACKS",
  "rated_pairs",
  "pairs_as_ratings",
  "training_density",
  "popularity_bonus",
  "POPULARITY_WEIGHT",
]

OBJECTIVES = ("rating", "ranking")
"""What a model learned: ratings, or an order of items (``Model.objective``)."""

FALLBACKS = ("popularity", None)
"""What :meth:`Model.recommend` gives a user it does not know."""

POPULARITY_WEIGHT = 0.5
"""A rating model's lists order items by predicted rating plus this × the
rating scale's width × ``log(1 + n_i)``, ``n_i`` the item's training ratings
(:func:`popularity_bonus`): by rating alone, an item rated 5 by one user tops
every list. Chosen by NDCG@10 on a validation split of u1.base
(``benchmarks/rating_lists.py``; 2 per log-count on the 1–5 scale); on u1–u5
test it took NDCG@10 from 0.120 to 0.228, above popularity's 0.198 and a
Bayesian shrink toward the mean (0.208 at its validated strength)."""

_FIT = FitSettings()  # fold_in regularises as the default fit does.
_RANKING = RankingSettings()


class Model(NamedTuple):
  """A trained model with what is needed to use it on raw ids.

  Attributes:
    params: the fitted :class:`mfjax.Params`.
    id_maps: the raw user and item ids of the training data
      (:func:`mfjax.load_ratings`), or None for a model indexed by position only.
    settings: the training settings (rank, steps, learning rate, l2, ensemble, ...)
      as a JSON-serialisable dict with str keys, or None. JSON has no tuples: a
      tuple in it loads back as a list.
    scale: the rating scale ``(lo, hi)`` predictions are clipped to. None means
      ``id_maps.scale``: :func:`save` records that, and :func:`load` returns it
      filled in.
    mfjax_version: the mfjax version that wrote the file; set by :func:`load`.
      :func:`save` always records the running version and ignores this field.
    objective: what the model learned: ``"rating"`` (its scores are ratings)
      or ``"ranking"`` (``fit(objective="ranking")``: its scores only order
      items, and RMSE does not apply). Files without it are rating models.
    rated: the training (user, item) index pairs, int32 ``[n, 2]``
      (:func:`rated_pairs` of the training ratings), or None. With them,
      :meth:`recommend` leaves out what a user rated and knows the most popular
      items; they cost 8 bytes per rating in the file.

  The methods take and give raw ids (those of ``id_maps``): :meth:`predict`,
  :meth:`recommend`, :meth:`similar_items` and :meth:`fold_in`.
  """

  params: Params
  id_maps: IdMaps | None = None
  settings: dict | None = None
  scale: tuple[float, float] | None = None
  mfjax_version: str | None = None
  objective: str = "rating"
  rated: np.ndarray | None = None

  def predict(self, users: Any, items: Any) -> np.ndarray | float:
    """Ratings of raw (user, item) id pairs, clipped to the model's scale.

    ``users`` and ``items`` are single ids or 1-D sequences of one length (a
    single id pairs with every id of the other). An id the training data did not
    have is predicted from the mean and whatever bias is known, as Surprise does.
    """
    if self.objective != "rating":
      raise ValueError(
        f"this is a {self.objective} model: its scores order items and are not "
        "ratings. Use model.recommend(user) for lists."
      )
    maps = _maps(self)
    user_ids, user_scalar = _ids("users", users)
    item_ids, item_scalar = _ids("items", items)
    if not user_scalar and not item_scalar and len(user_ids) != len(item_ids):
      raise ValueError(
        "users and items must have one length; got "
        f"{len(user_ids)} and {len(item_ids)}."
      )
    u, i = np.broadcast_arrays(maps.user_index(user_ids), maps.item_index(item_ids))
    scale = self.scale if self.scale is not None else maps.scale
    out = np.asarray(model_lib.predict(self.params, users=u, items=i, scale=scale))
    return float(out[0]) if user_scalar and item_scalar else out

  def recommend(
    self,
    user: Any,
    k: int | None = None,
    *,
    exclude_rated: bool = True,
    fallback="popularity",
    popularity_weight: float | None = None,
    n: int | None = None,
  ) -> tuple[np.ndarray, np.ndarray]:
    """A user's ``k`` best items (default 10) as raw ids, with their scores,
    best first, as :func:`mfjax.recommend` gives indices.

    A rating model orders items by predicted rating plus
    ``popularity_weight`` × the scale's width × ``log(1 + n_i)`` (``n_i`` the
    item's training ratings, :func:`popularity_bonus`; None:
    :data:`POPULARITY_WEIGHT`, or 0 without training pairs or scale; 0: by
    rating alone), and returns the predicted ratings (unclipped) as scores. A
    ranking model's scores are its raw scores, and take no weight.

    Items the user rated in training (the model's ``rated`` pairs) are left out
    unless ``exclude_rated`` is false; a model without ``rated`` pairs raises a
    ``ValueError`` rather than list them. A user the model does not know gets the
    most-rated items, scored by their training counts, when ``fallback`` is
    ``"popularity"``; with ``fallback=None`` it is a ``ValueError``.
    Fewer than ``k`` items come back when fewer are left. ``n`` is the 0.2 name
    of ``k`` (a ``DeprecationWarning``; gone in 0.4).
    """
    maps = _maps(self)
    n_items = self.params.item_factors.shape[0]
    k = renamed_argument("Model.recommend", "n", "k", n, k)
    k = validation.check_positive_int("k", 10 if k is None else k)
    if k > n_items:
      raise ValueError(f"k must be at most the model's {n_items} items; got {k}.")
    if fallback not in FALLBACKS:
      raise ValueError(f"fallback must be 'popularity' or None; got {fallback!r}.")
    bonus = popularity_bonus(self, popularity_weight)  # Checked for every user.
    index = _index_of(maps, "user", user)
    if index == UNKNOWN:
      if fallback is None:
        raise ValueError(f"user {user!r} is not in the model (fallback=None).")
      top, scores = _popular(self, k)
      return maps.items[top], scores
    exclude = None
    if exclude_rated and self.rated is None:
      raise ValueError(
        "this model has no training pairs (Model.rated), so it cannot leave out "
        "what the user rated: build it with FitResult.model(train, id_maps), or "
        "Model(..., rated=mfjax.serving.model.rated_pairs(train)), or pass "
        "exclude_rated=False."
      )
    if exclude_rated:
      mine = self.rated[self.rated[:, 0] == index]
      # Padded to a power of two (weight 0): users with other numbers of
      # ratings share a compiled program.
      size = 1 << max(4, len(mine) - 1).bit_length()
      n_users = self.params.user_factors.shape[0]
      exclude = pairs_as_ratings(mine, n_users, n_items, size)
    params = self.params
    if bonus is not None:
      params = params._replace(item_bias=params.item_bias + bonus)
    top, scores = topk.recommend(params, index, k, exclude=exclude)
    top, scores = np.asarray(top), np.asarray(scores)
    keep = top >= 0
    top, scores = top[keep], scores[keep]
    if bonus is not None:  # The predicted ratings of the items listed.
      scores = scores - bonus[top]
    return maps.items[top], scores

  def similar_items(
    self, item: Any, k: int | None = None, *, n: int | None = None
  ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items (default 10) whose factors are closest to ``item``'s by
    cosine; ``n`` is the 0.2 name of ``k``.

    Returns raw item ids and cosine similarities, most similar first; the item
    itself is left out. An item with zero factors is similar to none (0).
    """
    maps = _maps(self)
    n_items = self.params.item_factors.shape[0]
    index = _index_of(maps, "item", item)
    if index == UNKNOWN:
      raise ValueError(f"item {item!r} is not in the model.")
    k = renamed_argument("Model.similar_items", "n", "k", n, k)
    k = validation.check_positive_int("k", 10 if k is None else k)
    if k > n_items - 1:
      raise ValueError(
        f"k must be at most the model's {n_items - 1} other items; got {k}."
      )
    factors = np.asarray(self.params.item_factors, np.float64)
    norms = np.linalg.norm(factors, axis=1)
    unit = factors / np.where(norms > 0, norms, 1.0)[:, None]
    cosine = unit @ unit[index]
    cosine[index] = -np.inf
    order = np.lexsort((np.arange(n_items), -cosine))[:k]
    return maps.items[order], cosine[order]

  def fold_in(
    self, users: Any, items: Any, ratings: Any, *, l2=None, l2_bias=None
  ) -> Model:
    """The fields of a model that also knows new users, from their ratings.

    ``users``, ``items`` and ``ratings`` are 1-D and of one length: raw ids of
    users not in the model, raw ids of items in it, and the ratings. Each new user
    gets the closed-form solve of :func:`mfjax.fold_in`: for a rating model the
    ridge regression, with ``l2`` and ``l2_bias`` the model's training settings
    when it has them (else the fit defaults); for a ranking model the user's row
    of the iALS loss, with ``l2``, ``alpha0``, ``nu``, ``confidence`` and
    ``confidence_transform`` from its settings (else
    :class:`mfjax.settings.RankingSettings`' defaults, and a linear confidence
    of 1 as 0.3.0 fitted) and the
    all-pairs weight scaled by the training density, ``n_train`` in its settings
    or its number of training pairs, as the fit scaled it. Returns a model with
    the users merged in, in sorted id order.
    """
    if self.objective == "ranking" and l2_bias is not None:
      raise ValueError("a ranking model has no biases: leave out l2_bias.")
    maps = _maps(self)
    user_ids, _ = _ids("users", users)
    item_ids, _ = _ids("items", items)
    values = np.asarray(ratings)
    if values.ndim != 1 or values.dtype.kind not in "iuf":
      raise TypeError(f"ratings must be 1-D numbers; got {ratings!r}.")
    if not len(user_ids) == len(item_ids) == len(values) or not len(values):
      raise ValueError(
        "users, items and ratings must be non-empty and of one length; got "
        f"{len(user_ids)}, {len(item_ids)} and {len(values)}."
      )
    if not np.isfinite(values).all():
      raise ValueError(
        f"ratings must be finite; got {values[~np.isfinite(values)][0]}."
      )
    known = maps.user_index(user_ids) != UNKNOWN
    if known.any():
      raise ValueError(
        f"user {user_ids[known][0].item()!r} is already in the model; fold_in is "
        "for new users."
      )
    item_index = maps.item_index(item_ids)
    if (item_index == UNKNOWN).any():
      raise ValueError(
        f"item {item_ids[item_index == UNKNOWN][0].item()!r} is not in the model; "
        "fold_in needs the items' factors."
      )
    if maps.users.dtype.kind == "i" and user_ids.dtype.kind not in "iu":
      raise TypeError(f"the model's user ids are integers; got {user_ids[0]!r}.")
    # str, not the maps' fixed width: a longer new id must not be cut short.
    user_ids = user_ids.astype(np.int64 if maps.users.dtype.kind == "i" else str)
    new_ids, new_index = np.unique(user_ids, return_inverse=True)
    settings = self.settings or {}
    kept = self.settings
    new = Ratings(
      jnp.asarray(new_index.astype(np.int32)),
      jnp.asarray(item_index),
      jnp.asarray(values, jnp.float32),
      len(new_ids),
      self.params.item_factors.shape[0],
    )
    if self.objective == "ranking":
      density = training_density(self)
      folded = _ranking_fold_in(self, new, settings, l2, density)
      # Later fold-ins weigh as the fit did, not by the grown model's shape.
      kept = dict(settings, density=density)
    else:
      l2 = settings.get("l2", _FIT.l2) if l2 is None else l2
      l2_bias = settings.get("l2_bias", _FIT.l2_bias) if l2_bias is None else l2_bias
      folded = topk.fold_in(self.params, new, l2=l2, l2_bias=l2_bias)
    params, id_maps, rated = _merged(self, maps, new_ids, folded, new_index, item_index)
    return self._replace(params=params, id_maps=id_maps, rated=rated, settings=kept)


def training_density(m: Model) -> float:
  """A ranking model's training density, ``n_ratings / (n_users · n_items)``
  of the data it was fitted on, which scales its all-pairs weight: its
  settings' ``density`` (kept by a fold-in), else ``n_train`` (or its training
  pairs) over its users and items."""
  settings = m.settings or {}
  if settings.get("density") is not None:
    return float(settings["density"])
  n_train = settings.get("n_train")
  if n_train is None and m.rated is not None:
    n_train = len(m.rated)
  if not n_train:
    raise ValueError(
      "fold_in into a ranking model needs its training density: save the model "
      "with its training pairs (fitted.model(train, ...)) or settings['n_train']."
    )
  n_users, n_items = m.params.user_factors.shape[0], m.params.item_factors.shape[0]
  return min(1.0, n_train / (n_users * n_items))


def _ranking_fold_in(m: Model, new: Ratings, settings: dict, l2, density) -> Params:
  """:func:`mfjax.fold_in` of new users into a ranking model, with the fit's
  objective and density."""
  # Settings without a transform are 0.3.0's: linear, confidence 1.
  transform = settings.get("confidence_transform", "linear")
  given = {
    name: float(settings[name])
    for name in ("l2", "alpha0", "nu", "confidence")
    if settings.get(name) is not None
  }
  given.setdefault("confidence", None if "confidence_transform" in settings else 1.0)
  fitted = _RANKING._replace(confidence_transform=transform, **given)
  return topk.fold_in(
    m.params,
    new,
    l2=fitted.l2 if l2 is None else l2,
    objective=objectives.fitted_ranking(fitted),
    density=density,
  )


def rated_pairs(ratings: Ratings) -> np.ndarray:
  """``[n, 2]`` int32 (user, item) indices of ``ratings``, for ``Model.rated``.

  Padding (weight 0) and pairs with an unknown id (-1) are left out.
  """
  users, items = np.asarray(ratings.users), np.asarray(ratings.items)
  keep = (users >= 0) & (items >= 0)
  if ratings.weights is not None:
    keep &= np.asarray(ratings.weights) > 0
  return np.stack([users[keep], items[keep]], axis=1).astype(np.int32)


def pairs_as_ratings(
  pairs: np.ndarray, n_users: int, n_items: int, size: int | None = None
) -> Ratings:
  """``Ratings`` of ``[n, 2]`` (user, item) pairs, values 1: an ``exclude`` for
  :func:`mfjax.recommend`. With ``size`` (at least ``n``), padded with weight-0
  pairs (0, 0) to that length, so that calls with other numbers of pairs share
  a compiled program."""
  if size is None:
    return Ratings(
      jnp.asarray(pairs[:, 0]),
      jnp.asarray(pairs[:, 1]),
      jnp.ones(len(pairs), jnp.float32),
      n_users,
      n_items,
    )
  padded = np.zeros((size, 2), np.int32)
  padded[: len(pairs)] = pairs
  return dataclasses.replace(
    pairs_as_ratings(padded, n_users, n_items),
    weights=jnp.asarray(np.arange(size) < len(pairs), jnp.float32),
  )


def _maps(m) -> IdMaps:
  if m.id_maps is None:
    raise ValueError(
      "this model has no raw-id maps (it was made from bare params); use "
      "mfjax.predict / mfjax.recommend with indices, or build it with "
      "mfjax.Model(params, id_maps=...)."
    )
  return m.id_maps


def _ids(name: str, raw: Any) -> tuple[np.ndarray, bool]:
  """Raw ids as a 1-D array, and whether a single id was given."""
  scalar = np.ndim(raw) == 0
  array = np.asarray(raw)[None] if scalar else np.asarray(raw)
  if array.ndim != 1:
    raise ValueError(f"{name} must be one id or a 1-D sequence of ids; got {raw!r}.")
  if array.dtype.kind == "b":
    raise TypeError(f"{name} must be ids, not booleans.")
  if array.dtype.kind == "f" and np.isnan(array).any():
    raise ValueError(f"{name} holds NaN: a missing id.")
  if array.dtype.kind == "O":  # None, a dict, pandas' NA: not ids.
    bad = [x for x in array.tolist() if _not_an_id(x)][:1]
    if bad:
      raise TypeError(
        f"{name} must be integer or string ids; got {type(bad[0]).__name__} "
        f"{_short(bad[0])}."
      )
  elif array.dtype.kind not in "iufUS":
    raise TypeError(f"{name} must be integer or string ids; got dtype {array.dtype}.")
  return array, scalar


def _not_an_id(x) -> bool:
  """Whether ``x`` (an element of an object array) is not an integer, a whole
  float or a string; booleans are not ids."""
  if isinstance(x, (bool, np.bool_)):
    return True
  if isinstance(x, (float, np.floating)):
    return x != x  # NaN: a missing id.
  return not isinstance(x, (str, int, np.integer))


def _short(x) -> str:
  text = repr(x)
  return text if len(text) <= 60 else text[:57] + "..."


def _index_of(maps: IdMaps, axis: str, raw: Any) -> int:
  """The index of one raw id, or UNKNOWN."""
  array, scalar = _ids(axis, raw)
  if not scalar:
    raise TypeError(f"{axis} must be a single id; got {raw!r}.")
  lookup = maps.user_index if axis == "user" else maps.item_index
  return int(lookup(array)[0])


def popularity_bonus(m: Model, weight: float | None = None) -> np.ndarray | None:
  """What a rating model's lists add to each item's predicted rating:
  ``weight · (hi − lo) · log(1 + n_i)``, ``n_i`` the item's number of training
  pairs (``m.rated``), ``(lo, hi)`` the model's scale; float32 ``[n_items]``, or
  None where nothing is added (weight 0, or a ranking model).

  Args:
    m: the model.
    weight: ``>= 0``; None: :data:`POPULARITY_WEIGHT` for a rating model with
      training pairs and a scale, else 0. A ranking model (its loss already
      weighs what users pick) takes none: a weight above 0 is a ValueError, as
      is one for a model without training pairs or scale.
  """
  if m.objective != "rating":
    if weight:
      raise ValueError(
        "popularity_weight applies to rating models; a ranking model's scores "
        "already order items by what users pick."
      )
    return None
  scale = m.scale if m.scale is not None else getattr(m.id_maps, "scale", None)
  if weight is None:
    weight = POPULARITY_WEIGHT if m.rated is not None and scale is not None else 0.0
  weight = float(validation.check_nonnegative("popularity_weight", weight))
  if not weight:
    return None
  if m.rated is None or scale is None:
    missing = "training pairs (Model.rated)" if m.rated is None else "rating scale"
    raise ValueError(f"popularity_weight needs the model's {missing}; pass 0.")
  n_items = m.params.item_factors.shape[0]
  counts = np.bincount(m.rated[:, 1], minlength=n_items)
  bonus = weight * (float(scale[1]) - float(scale[0])) * np.log1p(counts)
  return bonus.astype(np.asarray(m.params.item_bias).dtype)


def _popular(m: Model, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Item indices and training counts of the ``n`` most-rated items."""
  if m.rated is None:
    raise ValueError(
      "the popularity fallback needs the training pairs, which this model was "
      "saved without (mfjax fit --save keeps them unless --no-rated)."
    )
  n_items = m.params.item_factors.shape[0]
  counts = np.bincount(m.rated[:, 1], minlength=n_items).astype(np.float64)
  order = np.lexsort((np.arange(n_items), -counts))[:n]  # Ties: lower index first.
  return order, counts[order]


def _merged(m, maps, new_ids, folded: Params, new_index, item_index):
  """Old and new users in one sorted table; the rated pairs re-indexed."""
  n_old = len(maps.users)
  all_ids = np.concatenate([maps.users, new_ids])
  order = np.argsort(all_ids, kind="stable")
  position = np.empty_like(order)
  position[order] = np.arange(len(order))  # Old or new row -> merged index.
  params = m.params._replace(
    user_factors=jnp.concatenate([m.params.user_factors, folded.user_factors])[order],
    user_bias=jnp.concatenate([m.params.user_bias, folded.user_bias])[order],
  )
  id_maps = dataclasses.replace(maps, users=all_ids[order])
  rated = None
  if m.rated is not None:
    old = np.stack([position[m.rated[:, 0]], m.rated[:, 1]], axis=1)
    added = np.stack([position[n_old + new_index], item_index], axis=1)
    rated = np.concatenate([old, added]).astype(np.int32)
  return params, id_maps, rated


# The 0.2 functions behind Model's methods (mfjax.rawids), until 0.4.


def predict_ids(m: Model, users: Any, items: Any) -> np.ndarray | float:
  """Deprecated since 0.3: ``m.predict(users, items)``."""
  renamed("mfjax.rawids", "predict_ids(m, ...)", "m.predict(...)")
  return m.predict(users, items)


def recommend_ids(m: Model, user: Any, n: int = 10, **options):
  """Deprecated since 0.3: ``m.recommend(user, n, ...)``."""
  renamed("mfjax.rawids", "recommend_ids(m, ...)", "m.recommend(...)")
  return m.recommend(user, n, **options)


def similar_items(m: Model, item: Any, n: int = 10):
  """Deprecated since 0.3: ``m.similar_items(item, n)``."""
  renamed("mfjax.rawids", "similar_items(m, ...)", "m.similar_items(...)")
  return m.similar_items(item, n)


def fold_in_ids(m: Model, users: Any, items: Any, ratings: Any, **options):
  """Deprecated since 0.3: ``m.fold_in(...)``, which returns the new Model;
  this returns its ``(params, id_maps, rated)`` as 0.2 did."""
  renamed("mfjax.rawids", "fold_in_ids(m, ...)", "m.fold_in(...)")
  folded = m.fold_in(users, items, ratings, **options)
  return folded.params, folded.id_maps, folded.rated
