"""conversion-relay: payment-provider webhooks to server-side conversion events."""

__version__ = "0.1.0"
