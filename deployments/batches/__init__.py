"""The OpenAI Batch API and offline batch jobs: JSONL request lines run on Ray Data against the models."""
