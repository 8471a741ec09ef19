"""Clip preprocessing (ingest, tracking, labels, background, geometry prior) and the dataset dir format
(`instag.data.dataset`). Nothing is imported here: dubbing reads source videos through `instag.data.video` and
should not pay for the mesh and signal libraries preprocessing needs."""
