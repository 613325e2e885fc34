"""The send gate: consent, quiet hours, frequency caps and rate limits."""
