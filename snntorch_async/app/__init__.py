"""The application around the library: command-line front ends."""
