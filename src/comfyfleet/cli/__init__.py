"""The command-line face: parse, call a service, render, exit with a documented code."""
