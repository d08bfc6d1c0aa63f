from funnelsync.daemon.cli import main

main()
