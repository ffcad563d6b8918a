"""One module per destination: map, validate, send, classify."""
