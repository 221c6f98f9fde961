"""HTTP route families; each module has ``register(app, api)``."""
