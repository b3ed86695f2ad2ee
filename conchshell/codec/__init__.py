"""conchshell.codec subpackage."""
