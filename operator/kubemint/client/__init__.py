"""Workload side: obtain kubemint tokens from mounted credentials, cache and refresh them."""

from kubemint.client.credentials import Credentials
from kubemint.client.retry import TokenError
from kubemint.client.tokens import AsyncTokenSource, KubemintAuth, TokenSource

__all__ = ["AsyncTokenSource", "Credentials", "KubemintAuth", "TokenError", "TokenSource"]
