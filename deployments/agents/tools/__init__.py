"""Server-side tools the agents loop runs: MCP servers, web search, and the builtin RAG tool."""
