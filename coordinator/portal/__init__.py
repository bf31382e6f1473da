"""The web portal's templates and static files (served by the coordinator, nothing from a CDN)."""
