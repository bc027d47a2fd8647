"""kopf handlers, one module per kind: read, call kubemint.reconcile, write through kube.py."""
