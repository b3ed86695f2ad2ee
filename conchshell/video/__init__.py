"""conchshell.video subpackage."""
