"""The HTTP API: the Litestar app, its routes, dependency providers, schemas and the one error table."""
