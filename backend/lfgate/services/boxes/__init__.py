"""The boxes themselves: their facts, the fleet of connections, live status, and the doctor
that checks the way to each."""
