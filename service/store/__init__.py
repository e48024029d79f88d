"""The long-term memory store: LangGraph's ``AsyncPostgresStore`` with the configured index and TTL."""
