"""The study: the paper's claims at CPU scale (``python -m benchmarks.study``)."""
