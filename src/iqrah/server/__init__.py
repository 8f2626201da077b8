"""The network adapter: FastAPI + WebSockets around the sans-I/O core."""
