"""The web page, served by the gateway at / (static files, no build step)."""
