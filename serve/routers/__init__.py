"""HTTP routers, one file per endpoint family: parse -> call a service/deployment -> JSON, SSE or error."""
