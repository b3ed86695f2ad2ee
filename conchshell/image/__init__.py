"""conchshell.image subpackage."""
