"""DotMac shared libraries."""
