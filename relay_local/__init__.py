"""The relay on 127.0.0.1 without AWS: `make local` (python -m relay_local) and the integration tests.

relay_local.stack.LocalRelay starts moto, creates the resources template.yaml describes, runs the
real handlers in-process behind a local HTTP API and SQS pollers, and points the consumers at fake
destinations (relay_local.fakes) unless real base URLs are given.
"""
