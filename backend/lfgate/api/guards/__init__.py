"""What every request passes before a router: the token, security headers, the body limit,
refusal of unstorable input, turn limits."""
