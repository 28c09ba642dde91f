"""Vast.ai adapter: the async REST client and typed offers/instances."""
