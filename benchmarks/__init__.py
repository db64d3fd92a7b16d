"""Scripts that reproduce a claim and print one measured JSON object as their last line.

Run from the repository root as modules: `python -m benchmarks.<name> [--quick]`, e.g.
`python -m benchmarks.paper_tables --part=cost --quick`. `shapes_runs` (the pretrain -> fine-tune VQA runner at
the `bench` size) and `step_timer` are shared by the others. Research diagnostics live in
experiments/.
"""
