"""The Responses API: requests, input and output items, stored responses (no HTTP, no torch)."""
