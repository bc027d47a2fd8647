"""`python -m kubemint.devcluster` ensures the control-plane binaries exist and prints their dir."""

from kubemint.devcluster.binaries import main

raise SystemExit(main())
