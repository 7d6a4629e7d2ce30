"""The OpenAI-compatible surface (/v1): its routes, request and response schemas, errors in
OpenAI's shape, and streamed chunks."""
