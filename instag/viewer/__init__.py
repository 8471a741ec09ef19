"""Local real-time preview: a page on 127.0.0.1 that plays audio and streams the avatar speaking it in sync."""
