"""The HTTP surface: listeners, /metrics, the status page and its API, health."""
