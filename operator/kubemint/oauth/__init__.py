"""The framework-free OAuth 2.0 core: errors, client authentication, grants, policy, tokens.

Nothing here imports Starlette or a Kubernetes client; the web layer adapts requests to it.
"""
