"""AdaBound, AMSBound, AdaBoundW and AdaMod for Optax, exact to the authors' code."""

from optax_bound._alias import adabound
from optax_bound._alias import adaboundw
from optax_bound._alias import adamod
from optax_bound._alias import amsbound
from optax_bound._bound_stats import BoundStats
from optax_bound._bound_stats import bound_stats
from optax_bound._bound_stats import effective_step_sizes
from optax_bound._dynamic_bound import BoundFn
from optax_bound._dynamic_bound import ClipStepSizeByDynamicBoundState
from optax_bound._dynamic_bound import clip_step_size_by_dynamic_bound
from optax_bound._dynamic_bound import coupled_final_lr
from optax_bound._dynamic_bound import reference_bounds
from optax_bound._find_final_lr import FinalLrRangeTest
from optax_bound._find_final_lr import RangeTestCurve
from optax_bound._find_final_lr import find_final_lr
from optax_bound._momental_bound import ClipStepSizeByMomentalBoundState
from optax_bound._momental_bound import clip_step_size_by_momental_bound
from optax_bound._moments import reference_step_size_correction
from optax_bound._moments import scale_by_adam
from optax_bound._moments import scale_by_amsgrad
from optax_bound._version import __version__

__all__ = (
    "BoundFn",
    "BoundStats",
    "ClipStepSizeByDynamicBoundState",
    "ClipStepSizeByMomentalBoundState",
    "FinalLrRangeTest",
    "RangeTestCurve",
    "adabound",
    "adaboundw",
    "adamod",
    "amsbound",
    "bound_stats",
    "clip_step_size_by_dynamic_bound",
    "clip_step_size_by_momental_bound",
    "coupled_final_lr",
    "effective_step_sizes",
    "find_final_lr",
    "reference_bounds",
    "reference_step_size_correction",
    "scale_by_adam",
    "scale_by_amsgrad",
    "__version__",
)
