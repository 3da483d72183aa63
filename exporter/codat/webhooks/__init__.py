"""Codat's webhooks: that Codat sent them (signatures), what each means (events), and the
re-polls they hasten, debounced and handed to the poller (receiver)."""
