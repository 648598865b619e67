"""Serving trained and base models for inference, in a process of their own.

`backends.py` is the small interface every backend implements (load, generate a stream of text,
unload) and the registry of backends by name; `hf_backend.py` (transformers, any model, a LoRA
adapter on its base without merging), `llama_cpp_backend.py` (a verified GGUF export) and
`vllm_backend.py` (GPU hosts where vLLM is installed) implement it. `process.py` is the serving
process, `python -m tuneyard.serving`, an HTTP server on loopback that holds the loaded models and
unloads idle ones; `supervisor.py` starts it from the API, talks to it and restarts it when it dies.
Nothing here imports the API or the store.
"""
