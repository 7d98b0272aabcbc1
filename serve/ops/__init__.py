"""What every request passes through: metrics, logs and rate limits."""
