"""The `instag` command line: one thin module per command; each parses, then calls a library function."""
