"""The access-control app: people, reference photos, devices, check-ins and the audit log."""
