"""conchshell.data subpackage."""
