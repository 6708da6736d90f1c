"""The demo's data: a made-up film catalogue and its ratings, generated here.

``mfjax demo`` needs ratings it may ship (MovieLens' licence forbids
redistribution) and that show what a recommender does: 120 films with
invented two-word titles in six genres, and users whose tastes follow the
genres. Each user has a taste for each genre, each film a quality, each user a
leniency; a user picks 15–59 films, mostly from the genres they like (as real
users mostly rate what they chose to watch), and gives each
``round(3.2 + 0.9·(taste + quality + leniency) + noise)`` stars, clipped to
1–5. Nothing is random at import: :func:`generate` draws from its seed with
NumPy alone (no JAX program to compile).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["GENRES", "Films", "generate"]

# Each genre's title words: a title is one of the first and one of the second.
GENRES = {
  "space": (
    ("Orbit", "Nebula", "Signal", "Comet", "Starfall", "Void", "Eclipse", "Pulsar"),
    ("Run", "Protocol", "Drift", "Horizon", "Station", "Rising", "Zero", "Sector"),
  ),
  "crime": (
    ("Cold", "Silent", "Dead", "Midnight", "Crooked", "Hollow", "Red", "Last"),
    ("Alibi", "Witness", "Harbour", "Ledger", "Verdict", "Alley", "Motive", "Trail"),
  ),
  "comedy": (
    ("Big", "Crazy", "Lucky", "Awkward", "Happy", "Wild", "Little", "Second"),
    ("Wedding", "Weekend", "Roommates", "Party", "Holiday", "Mix-up", "Uncle", "Date"),
  ),
  "romance": (
    ("Summer", "Paper", "Letters", "Autumn", "Distant", "Golden", "Almost", "Secret"),
    ("Hearts", "Promise", "Rain", "Garden", "Vows", "Shores", "Kiss", "Waltz"),
  ),
  "horror": (
    ("Black", "Bleeding", "Whispering", "Rotten", "Pale", "Sunken", "Grim", "Crawling"),
    ("Cellar", "Woods", "Doll", "Lake", "Chapel", "Hunger", "Mask", "Nest"),
  ),
  "animation": (
    ("Brave", "Tiny", "Flying", "Magic", "Sleepy", "Jolly", "Clever", "Cosmic"),
    ("Fox", "Dragon", "Kite", "Robot", "Penguin", "Teapot", "Island", "Bear"),
  ),
}


class Films(NamedTuple):
  """The generated catalogue and ratings.

  Attributes:
    titles: ``[n_items]`` film titles (unique).
    genres: ``[n_items]`` each film's genre, a key of :data:`GENRES`.
    users, items: ``[n]`` 0-based indices of each rating.
    stars: ``[n]`` whole stars, 1–5.
    test: ``[n]`` whether the rating is held out (a random fifth).
    n_users: the number of users.
  """

  titles: np.ndarray
  genres: np.ndarray
  users: np.ndarray
  items: np.ndarray
  stars: np.ndarray
  test: np.ndarray
  n_users: int

  def matrix(self, held_out: bool) -> np.ndarray:
    """The training (or, with ``held_out``, the test) ratings as a dense
    ``[n_users, n_items]`` float32 matrix, 0 where a user has no rating."""
    keep = self.test if held_out else ~self.test
    out = np.zeros((self.n_users, len(self.titles)), np.float32)
    out[self.users[keep], self.items[keep]] = self.stars[keep]
    return out


def generate(seed: int = 0, n_users: int = 300, per_genre: int = 20) -> Films:
  """Draws the catalogue and its ratings (see the module's description).

  Args:
    seed: NumPy seed; the same seed gives the same films and ratings.
    n_users: the number of users.
    per_genre: films per genre, at most 64 (the title words' pairs).

  Returns:
    :class:`Films`.
  """
  rng = np.random.default_rng(seed)
  titles, genre_of = [], []
  for g, (first, second) in enumerate(GENRES.values()):
    for pair in rng.permutation(len(first) * len(second))[:per_genre]:
      titles.append(f"{first[pair // len(second)]} {second[pair % len(second)]}")
      genre_of.append(g)
  genre_of = np.array(genre_of)
  n_items = len(titles)
  taste = rng.normal(0.0, 1.0, (n_users, len(GENRES)))
  quality = rng.normal(0.0, 0.6, n_items)
  leniency = rng.normal(0.0, 0.4, n_users)
  affinity = taste[:, genre_of] + quality + leniency[:, None]
  users, items = [], []
  for user in range(n_users):
    count = int(rng.integers(15, 60))
    weight = np.exp(1.5 * (affinity[user] - affinity[user].max()))
    chosen = rng.choice(n_items, size=count, replace=False, p=weight / weight.sum())
    users.append(np.full(count, user))
    items.append(chosen)
  users, items = np.concatenate(users), np.concatenate(items)
  noise = rng.normal(0.0, 0.5, len(users))
  stars = np.clip(np.round(3.2 + 0.9 * affinity[users, items] + noise), 1, 5)
  return Films(
    titles=np.array(titles),
    genres=np.array(list(GENRES))[genre_of],
    users=users,
    items=items,
    stars=stars.astype(np.float32),
    test=rng.random(len(users)) < 0.2,
    n_users=n_users,
  )
