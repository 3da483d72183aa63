"""Talking to Codat: the client, what it reads besides dataStatus, refreshes, webhooks."""
