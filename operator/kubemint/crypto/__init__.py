"""The only place that imports joserfc and cryptography: keys, secrets, JWKS, JWTs."""
