"""What the gateway does, between the HTTP layer and box access: models and chat turns."""
