"""Any HTTPS endpoint: HMAC-signed JSON batches with an idempotency key."""
