"""Inference: engine interface, engines, the shared OpenAI layer and the LLM deployment."""
