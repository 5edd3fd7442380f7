"""The parameter trees that the speed and memory benchmarks step through.

An optimizer step is elementwise work over every parameter, so all that
matters of a model is the shapes of its leaves: how many there are, how large,
in which layout. The trees here are those of real models, leaf for leaf, with
the names and layouts Flax gives them, without the models themselves:

* ``resnet34``: the CIFAR-10 ResNet-34 of the paper's experiments (3x3 stem,
  basic blocks [3, 4, 6, 3], 10 classes) in Flax's layout: convolution kernels
  HWIO, BatchNorm ``scale`` and ``bias`` (its running statistics are not
  parameters), the ``Dense_0`` head. 110 leaves, 21,282,122 parameters, the
  count of the usual PyTorch model.
* ``gpt2``: GPT-2 small (124M) as Flax/Transformers name it: token and position
  embeddings, 12 blocks of LayerNorm, attention and MLP, the final LayerNorm.
  148 leaves, 124,439,808 parameters.
* ``deep_stack``: many small leaves, as a deep model has them: 125 blocks of
  a transformer's four dense layers (attention's fused query-key-value and
  output projections, the MLP's up and down projections), each a ``kernel``
  and a ``bias``, at width 128 and without the norms. 1000 leaves of 4
  distinct kernel shapes, 24,720,000 parameters: the tree where the work that
  tracing and compiling do per leaf shows most.
* ``single_buffer``: one flat leaf, to show how the cost of a step grows with
  its size, free of per-leaf overhead.

Each builder takes size knobs so that the tests can run a tiny tree with the
same structure.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Shapes = dict[str, Any]  # A nested dict whose leaves are shape tuples.
# The scales of the drawn values: weights ~0.02, gradients ~1e-3.
PARAM_SCALE, GRAD_SCALE = 0.02, 1e-3

RESNET34_BLOCKS = (3, 4, 6, 3)


def resnet34(width: int = 64, num_classes: int = 10,
             blocks: tuple[int, ...] = RESNET34_BLOCKS) -> Shapes:
  """The CIFAR-10 ResNet-34 of the paper in Flax's layout; see the module docstring."""

  def batch_norm(c):
    return {"scale": (c,), "bias": (c,)}

  tree: Shapes = {"conv_init": {"kernel": (3, 3, 3, width)},
                  "bn_init": batch_norm(width)}
  c_in, index = width, 0
  for stage, n_blocks in enumerate(blocks):
    c_out = width * 2**stage
    for _ in range(n_blocks):
      block = {"Conv_0": {"kernel": (3, 3, c_in, c_out)},
               "BatchNorm_0": batch_norm(c_out),
               "Conv_1": {"kernel": (3, 3, c_out, c_out)},
               "BatchNorm_1": batch_norm(c_out)}
      if c_in != c_out:  # The projection shortcut of each new stage.
        block["conv_proj"] = {"kernel": (1, 1, c_in, c_out)}
        block["norm_proj"] = batch_norm(c_out)
      tree[f"ResNetBlock_{index}"] = block
      c_in, index = c_out, index + 1
  tree["Dense_0"] = {"kernel": (c_in, num_classes), "bias": (num_classes,)}
  return tree


def gpt2(d_model: int = 768, n_layer: int = 12, vocab: int = 50257,
         n_ctx: int = 1024) -> Shapes:
  """GPT-2 small (124M) as Flax names it; see the module docstring."""

  def layer_norm():
    return {"scale": (d_model,), "bias": (d_model,)}

  def dense(n_in, n_out):
    return {"kernel": (n_in, n_out), "bias": (n_out,)}

  blocks = {str(i): {"ln_1": layer_norm(),
                     "attn": {"c_attn": dense(d_model, 3 * d_model),
                              "c_proj": dense(d_model, d_model)},
                     "ln_2": layer_norm(),
                     "mlp": {"c_fc": dense(d_model, 4 * d_model),
                             "c_proj": dense(4 * d_model, d_model)}}
            for i in range(n_layer)}
  return {"wte": {"embedding": (vocab, d_model)},
          "wpe": {"embedding": (n_ctx, d_model)},
          "h": blocks,
          "ln_f": layer_norm()}


def deep_stack(n_blocks: int = 125, d_model: int = 128) -> Shapes:
  """500 (kernel, bias) pairs of a transformer-like stack; see the module docstring."""

  def dense(n_in, n_out):
    return {"kernel": (n_in, n_out), "bias": (n_out,)}

  return {f"block_{i}": {"attn_qkv": dense(d_model, 3 * d_model),
                         "attn_out": dense(d_model, d_model),
                         "mlp_in": dense(d_model, 4 * d_model),
                         "mlp_out": dense(4 * d_model, d_model)}
          for i in range(n_blocks)}


def single_buffer(size: int) -> Shapes:
  """One flat leaf of ``size`` parameters."""
  return {"w": (int(size),)}


def _is_shape(x) -> bool:
  return isinstance(x, tuple)


def leaf_shapes(tree: Shapes) -> list[tuple[int, ...]]:
  """The shapes of the leaves, in the order of ``jax.tree.leaves``."""
  return jax.tree.leaves(tree, is_leaf=_is_shape)


def num_params(tree: Shapes) -> int:
  return sum(int(np.prod(s)) for s in leaf_shapes(tree))


def params_and_grads(tree: Shapes, dtype, seed: int = 0) -> tuple[Any, Any]:
  """Random parameters and gradients of a typical scale (no zeros, no subnormals).

  The values do not change the work of a step (it has no data-dependent
  branches), but subnormal numbers would slow down any CPU kernel, so both are
  normal draws of a plausible size: weights ~0.02, gradients ~1e-3. NumPy draws
  them: ``jax.random`` would compile a kernel for every distinct leaf shape.
  """
  rng = np.random.default_rng(seed)

  def draw(shape, scale):
    return jnp.asarray(scale * rng.standard_normal(shape, np.float32), dtype)

  params = jax.tree.map(lambda s: draw(s, PARAM_SCALE), tree,
                        is_leaf=_is_shape)
  grads = jax.tree.map(lambda s: draw(s, GRAD_SCALE), tree, is_leaf=_is_shape)
  return params, grads


def device_params_and_grads(tree: Shapes, dtype, seed: int = 0
                            ) -> tuple[Any, Any]:
  """``params_and_grads`` drawn on the default device, by one jitted function.

  The same scales, other values, for the largest trees: NumPy's draws of a
  1e9-parameter buffer take tens of seconds and 8 GB of host memory, a GPU's
  a few milliseconds. One draw for all the leaves, cut into them, compiles
  once (a quarter of a second on a CPU); a draw per leaf would compile a
  generator per leaf.
  """
  shapes = leaf_shapes(tree)
  treedef = jax.tree.structure(tree, is_leaf=_is_shape)
  sizes = [int(np.prod(s)) for s in shapes]
  offsets = np.cumsum([0, *sizes]).tolist()

  @jax.jit
  def draw(key):
    def leaves(key, scale):
      flat = (scale * jax.random.normal(key, (offsets[-1],))).astype(dtype)
      return treedef.unflatten([
          jax.lax.slice(flat, (start,), (start + size,)).reshape(shape)
          for start, size, shape in zip(offsets[:-1], sizes, shapes,
                                        strict=True)])

    key_params, key_grads = jax.random.split(key)
    return leaves(key_params, PARAM_SCALE), leaves(key_grads, GRAD_SCALE)

  return draw(jax.random.key(seed))
