"""Transport security and client identity: certificates, client credentials, TLS policy and the
Fleet-only proxy that keeps Flower's run-submission API off the network (see docs/SECURITY.md)."""
