"""Provider webhooks into durable agent jobs: endpoints (setup, registration at the provider,
removal), ingest (routing and verification) and the group-commit writer."""
