from topos_cli.cli.main import main

main()
