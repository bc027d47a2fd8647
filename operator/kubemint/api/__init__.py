"""The custom resources' contract in Python: constants, spec types, durations, conditions.

Pure: no I/O, no kopf, no Kubernetes client.
"""
