"""thinkcli: local inference-time scaling on llama.cpp."""

__version__ = "0.1.0"
