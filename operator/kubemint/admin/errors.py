"""The admin commands' one error: something the user can act on (no access, no cluster, bad
input), printed as one line. Its own module so `kubemint` loads no Kubernetes client until an
admin command runs."""

from __future__ import annotations


class AdminError(Exception):
    pass
