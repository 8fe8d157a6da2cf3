"""Each account's ordered event stream, delivered by long-poll and WebSocket."""
