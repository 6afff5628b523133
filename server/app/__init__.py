"""Assembly: settings, the ASGI application, the servers that run it, and the CLI."""
