"""The Starlette sidecar: REST API and the small pages people open in a browser."""
