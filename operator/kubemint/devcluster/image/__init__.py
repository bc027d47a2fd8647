"""Images without a registry: the local Debian base and the kubemint image of the Dockerfile.

`build_image()` returns the kubemint image as a cached OCI archive (see build.py); the tools
it needs (mmdebstrap, buildah) are Debian packages installed on first use (tools.py).
"""

from kubemint.devcluster.image.build import KubemintImage, build_image, chart_reference
from kubemint.devcluster.image.tools import ImageError

__all__ = ["ImageError", "KubemintImage", "build_image", "chart_reference"]
