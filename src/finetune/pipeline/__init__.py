"""The five stages as library functions, one module each (so DVC can depend on exactly one).

Each reads the previous stage's outputs from `cfg.paths`, writes its own outputs atomically
(a failed stage leaves the previous outputs untouched) and returns a short summary.
"""
