"""Machine secrets: 256-bit, prefixed, verified by digest in constant time."""

from __future__ import annotations

import base64

from kubemint.crypto import secrets


def test_a_secret_is_prefixed_and_carries_256_random_bits() -> None:
    value = secrets.generate_secret()
    assert value.startswith("kmint_")
    raw = base64.urlsafe_b64decode(value.removeprefix("kmint_") + "=")
    assert len(raw) == 32
    assert secrets.generate_secret() != value


def test_verification_accepts_the_secret_and_nothing_else() -> None:
    value = secrets.generate_secret()
    digests = [secrets.digest(secrets.generate_secret()), secrets.digest(value)]
    assert secrets.verify(value, digests)
    assert not secrets.verify(value + "x", digests)
    assert not secrets.verify("", digests)
    assert not secrets.verify(value, [])


def test_a_fingerprint_is_short_and_does_not_contain_the_secret() -> None:
    value = secrets.generate_secret()
    label = secrets.fingerprint(value)
    assert label.startswith("sha256:")
    assert len(label) == 15
    assert value.removeprefix("kmint_")[:8] not in label
