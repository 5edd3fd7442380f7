"""What a training run that watches its bound must have recorded.

Shared by the Flax NNX and Linen tests: each trains twice, once watching the
bound after every epoch (``observe_bound=True``) and once not.
"""

import jax.numpy as jnp
import numpy as np

from benchmarks.flax_training import _digits
import optax_bound


def assert_watched_bound_history(unwatched, watched):
  """Both runs trained alike; the watched one logged each epoch's band."""
  assert unwatched.train_loss == watched.train_loss
  assert unwatched.bound is None
  assert [b["step"] for b in watched.bound] == [22, 44]
  for b in watched.bound:
    lower, upper = optax_bound.reference_bounds(
        jnp.float32(b["step"]), _digits.FINAL_LR, _digits.GAMMA)
    np.testing.assert_allclose([b["lower"], b["upper"]], [lower, upper],
                               rtol=1e-6)
    assert 0 <= b["fraction_at_lower"] <= 1 and 0 <= b["fraction_at_upper"] <= 1
    assert lower <= b["median_step_size"] <= upper
  # Early in the run Adam's step sizes are large: the upper bound binds.
  assert watched.bound[0]["fraction_at_upper"] > 0.1
