from funnelsync.cli.commands import main

main()
