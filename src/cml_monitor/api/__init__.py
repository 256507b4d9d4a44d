"""HTTP on top of the runtime: the FastAPI app, its routes, authentication and the dashboard."""
