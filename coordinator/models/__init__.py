"""The coordinator service's tables (``tables``) and its request/response schemas, by resource."""
