from topos_cli.cli.main import app

app()
