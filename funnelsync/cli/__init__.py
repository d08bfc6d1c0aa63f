"""The `funnelsync` command line: the commands, what they print, progress on a terminal."""
