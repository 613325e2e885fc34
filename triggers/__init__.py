"""How things get in: the HTTP API, the event router, SMPP inbound, click redirects."""
