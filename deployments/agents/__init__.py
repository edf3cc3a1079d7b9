"""Agents: the Responses loop, conversations and the tool runtime, on an orchestrator deployment."""
