"""`python -m kubemint` is the `kubemint` command."""

from kubemint.cli import main

raise SystemExit(main())
