"""The coordinator's HTTP API (versioned under ``/v1``): dependencies, problem details, routes by resource."""
