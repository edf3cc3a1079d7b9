"""Protocol types (pydantic) owned by stackserve: OpenAI and Llama Stack schemas. Never imported from engines."""
