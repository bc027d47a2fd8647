"""Pure reconcile decisions: `now` is passed in, nothing here does I/O or imports kopf."""
