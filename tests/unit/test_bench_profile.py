"""bench.profile sorts py-spy samples by the deepest frame that names a part of the path."""

from __future__ import annotations

from bench.profile import OTHER, breakdown, part_of

HANDLER = "create_app.<locals>.token (kubemint/server/app.py:104)"
SIGN = "Signer.sign (kubemint/crypto/jwt.py:120)"
ROUTER = "Router.app (starlette/routing.py:704)"


def test_the_deepest_named_frame_decides() -> None:
    assert part_of([ROUTER, HANDLER, SIGN, "JSONEncoder.encode (json/encoder.py:200)"]) == (
        "sign: JWS, ECDSA/RSA"
    )
    assert part_of([ROUTER, HANDLER]) == "handler glue"
    assert part_of([ROUTER, HANDLER, "_form (kubemint/server/app.py:320)"]) == "form parsing"
    assert part_of(["main (x.py:1)"]) == OTHER


def test_breakdown_sums_counts_and_drops_the_views_own_threads() -> None:
    lines = [
        f"{ROUTER};{HANDLER};{SIGN} 7",
        f"{ROUTER};{HANDLER} 3",
        "Thread._bootstrap (threading.py:1002);Informer.run (kubemint/store/informer.py:97) 50",
        "malformed line",
    ]
    assert breakdown(lines) == {"sign: JWS, ECDSA/RSA": 7, "handler glue": 3}
