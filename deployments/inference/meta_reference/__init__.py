"""Meta-reference engine: our own PyTorch engine for Llama-family checkpoints with continuous batching."""
