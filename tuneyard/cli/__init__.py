"""The `tuneyard` command line."""
