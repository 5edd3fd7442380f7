"""AdaBound, AMSBound and AdaBoundW for Optax, exact to the authors' reference code."""

from optax_bound._alias import adabound
from optax_bound._alias import adaboundw
from optax_bound._alias import amsbound
from optax_bound._dynamic_bound import BoundFn
from optax_bound._dynamic_bound import ClipStepSizeByDynamicBoundState
from optax_bound._dynamic_bound import clip_step_size_by_dynamic_bound
from optax_bound._dynamic_bound import coupled_final_lr
from optax_bound._dynamic_bound import effective_step_sizes
from optax_bound._dynamic_bound import reference_bounds
from optax_bound._moments import reference_step_size_correction
from optax_bound._moments import scale_by_adam
from optax_bound._moments import scale_by_amsgrad
from optax_bound._version import __version__

__all__ = (
    "BoundFn",
    "ClipStepSizeByDynamicBoundState",
    "adabound",
    "adaboundw",
    "amsbound",
    "clip_step_size_by_dynamic_bound",
    "coupled_final_lr",
    "effective_step_sizes",
    "reference_bounds",
    "reference_step_size_correction",
    "scale_by_adam",
    "scale_by_amsgrad",
    "__version__",
)
