"""What the study, the Flax training scripts and the speed benchmarks share.

``datasets``: the digits and MNIST-1D splits; ``baselines``: the SGD with
momentum that AdaBound ends as; ``report``: tables, and JSON with the machine.
"""
