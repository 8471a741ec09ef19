"""Media in and out for rendering: decoding any audio file, streaming MP4 (H.264 + AAC) writing."""
