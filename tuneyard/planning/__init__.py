"""Planning a job before it runs: what it will need (memory, time, cost) and what to set.

Pure arithmetic over a model's config.json and a job's hyperparameters: no torch, no store, so
the API answers within a second and the runner (which imports neither API nor store) can put
the same estimate beside what it measured. Modules:

- `shape`: a decoder's dimensions and parameter counts, from config.json alone.
- `memory`: the peak-memory breakdown of one training step.
- `compute`: FLOPs of a run, and its time from a measured throughput.
"""
