"""Benchmarks: the pipeline measured against bare baselines of this machine, in one run (`make bench`)."""
