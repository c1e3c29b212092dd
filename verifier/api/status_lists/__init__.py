"""GET /v1/status-lists/{name}: the signed Status Lists (WIRE-FORMAT 8), public."""
