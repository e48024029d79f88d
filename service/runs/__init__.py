"""Runs: execution, and the crons and webhooks around them."""
