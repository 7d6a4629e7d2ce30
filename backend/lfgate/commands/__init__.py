"""The client commands, `lfgate models` and `lfgate chat`: they talk to a running gateway over
the HTTP API the page uses (docs/api.md), never to its services or the box directly, so they
work from any machine that can reach the gateway."""
