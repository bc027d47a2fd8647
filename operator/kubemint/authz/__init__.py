"""Forward-auth for proxies: AccessRule `spec.http` decisions over kubemint tokens."""
