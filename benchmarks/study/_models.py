"""Small models in plain JAX: an MLP, and a CNN over 1-D signals or 2-D images.

Plain functions of a params dict, so that a training run can be ``jax.vmap``-ed
over seeds and hyperparameters inside one jitted ``lax.scan``: on a CPU that is
many times faster than a Python loop over Flax modules. Parameters are drawn
with NumPy, outside the compiled run: ``jax.random`` inside it would add
seconds of compilation to every optimizer's run for no gain.
"""

import itertools
import math
from typing import Callable
from typing import NamedTuple
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


class Model(NamedTuple):
  """``init(rng) -> params`` and ``apply(params, x) -> logits``."""

  name: str
  init: Callable[[np.random.Generator], dict]
  apply: Callable[[dict, jax.Array], jax.Array]


def _he(rng: np.random.Generator, shape: Sequence[int], fan_in: int) -> np.ndarray:
  return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def mlp(in_features: int, hidden: Sequence[int], classes: int = 10) -> Model:
  """ReLU layers of widths ``hidden``, then a linear layer to the logits."""
  widths = [in_features, *hidden, classes]

  def init(rng):
    return {f"dense{i}": {"w": _he(rng, (n, m), n),
                          "b": np.zeros(m, np.float32)}
            for i, (n, m) in enumerate(itertools.pairwise(widths))}

  def apply(params, x):
    x = x.reshape(x.shape[0], -1)
    for i in range(len(widths) - 1):
      if i:
        x = jax.nn.relu(x)
      layer = params[f"dense{i}"]
      x = x @ layer["w"] + layer["b"]
    return x

  name = "MLP " + "-".join(map(str, widths))
  return Model(name, init, apply)


def _patches(x: jax.Array, kernel: int, stride: int) -> jax.Array:
  """Every kernel-sized window of ``x`` ('SAME' padding), flattened, at a stride.

  [N, *spatial, C] -> [N, *ceil(spatial / stride), kernel**d * C]. A
  convolution is then one matmul: under ``vmap`` XLA's CPU convolution gets
  a batch of kernels, which it runs many times slower than a batched matmul.
  """
  spatial = x.shape[1:-1]
  out = [-(-n // stride) for n in spatial]
  pads = []
  for n, m in zip(spatial, out, strict=True):
    total = max((m - 1) * stride + kernel - n, 0)  # XLA's 'SAME' padding.
    pads.append((total // 2, total - total // 2))
  x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
  windows = []
  for offset in itertools.product(range(kernel), repeat=len(spatial)):
    index = tuple(slice(o, o + (m - 1) * stride + 1, stride)
                  for o, m in zip(offset, out, strict=True))
    windows.append(x[(slice(None), *index)])
  return jnp.concatenate(windows, axis=-1)


def cnn(
    in_shape: Sequence[int],
    channels: Sequence[int],
    kernel: int,
    strides: Sequence[int],
    classes: int = 10,
) -> Model:
  """ReLU convolutions ('SAME' padding), then a linear layer to the logits.

  Args:
    in_shape: One example's shape, channels last: ``(length, 1)`` for a
      signal, ``(height, width, 1)`` for an image.
    channels: Output channels of each convolution.
    kernel: Kernel size along every spatial axis.
    strides: Stride of each convolution.
    classes: Number of logits.

  Returns:
    The model.
  """
  spatial = len(in_shape) - 1
  size = list(in_shape[:-1])
  for s in strides:
    size = [-(-n // s) for n in size]  # 'SAME' padding: ceil(n / stride).
  flat = math.prod(size) * channels[-1]
  ins = [in_shape[-1], *channels[:-1]]

  def init(rng):
    params = {
        f"conv{i}": {"w": _he(rng, (kernel**spatial * c_in, c_out),
                              kernel**spatial * c_in),
                     "b": np.zeros(c_out, np.float32)}
        for i, (c_in, c_out) in enumerate(zip(ins, channels, strict=True))
    }
    params["dense"] = {"w": _he(rng, (flat, classes), flat),
                       "b": np.zeros(classes, np.float32)}
    return params

  def apply(params, x):
    for i, stride in enumerate(strides):
      layer = params[f"conv{i}"]
      x = jax.nn.relu(_patches(x, kernel, stride) @ layer["w"] + layer["b"])
    return x.reshape(x.shape[0], -1) @ params["dense"]["w"] + params["dense"]["b"]

  name = f"CNN {'-'.join(map(str, channels))} k{kernel}"
  return Model(name, init, apply)


def n_params(model: Model) -> int:
  """The number of scalar parameters of ``model``."""
  params = model.init(np.random.default_rng(0))
  return sum(p.size for p in jax.tree.leaves(params))
