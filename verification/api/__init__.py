"""REST API for door devices (DRF): token auth per device, check-in submit and read."""
