"""Workload side: obtain kubemint tokens from mounted credentials, cache and refresh them."""

from kubemint.client.credentials import Credentials
from kubemint.client.tokens import KubemintAuth, TokenError, TokenSource

__all__ = ["Credentials", "KubemintAuth", "TokenError", "TokenSource"]
