"""Research diagnostics: one folder per question, each with a README of what it found.

Run from the repository root as modules, e.g.
`python -m experiments.shape_learning.supervision_paths --quick`.
"""
