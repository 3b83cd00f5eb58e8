"""webhooks.pages."""
