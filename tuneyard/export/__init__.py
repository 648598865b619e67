"""Exporting a trained model so it runs outside tuneyard: merged safetensors, GGUF verified by
llama.cpp against transformers, an Ollama Modelfile, and the push into a local Ollama.

The export itself (`python -m tuneyard.export`) runs in a process of its own, like the runner: it
imports neither the API nor the store. `formats` and `ollama` import no torch, so the API may use
them.
"""
