"""The Starlette adapter: HTTP in, the framework-free OAuth core, HTTP out."""
