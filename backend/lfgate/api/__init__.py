"""The HTTP layer: thin routers that validate with pydantic and hand off to the services."""
