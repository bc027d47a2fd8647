"""`python -m kubemint.devcluster.image` (`make image`): build the kubemint image if needed and
print its OCI archive, reference and digest."""

from __future__ import annotations

import sys

from kubemint.devcluster.image import ImageError, build_image


def main() -> int:
    try:
        image = build_image()
    except ImageError as exc:
        print(f"kubemint: {exc}", file=sys.stderr)
        return 1
    print(f"archive:   {image.archive}")
    print(f"reference: {image.reference}")
    print(f"digest:    {image.digest}")
    return 0


raise SystemExit(main())
