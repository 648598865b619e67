"""The runner: trains one job in its own process.

It reads RUN_DIR/spec.json and writes telemetry, checkpoints, the final model and the result.
It imports neither the API nor the store (DESIGN §4). Keep this file free of torch imports so
the supervisor can import `tuneyard.training.contract` cheaply.
"""
