"""The kopf layer: thin handlers over kubemint.reconcile, and the only Kubernetes I/O."""
