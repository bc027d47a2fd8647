"""Read-only admin commands that answer from the token server's own decision code:
`kubemint can-i`, `kubemint inspect`, `kubemint status` (also `kubectl kubemint …`)."""
