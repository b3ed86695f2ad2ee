"""conchshell.gan subpackage."""
