"""The HTTP API: the Litestar app, one module per resource, dependency providers, error mapping."""
