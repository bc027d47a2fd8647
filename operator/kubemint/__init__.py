"""kubemint: machine-to-machine OAuth2 tokens for Kubernetes, configured with custom resources."""

__version__ = "0.1.0"
