from kmeweb import create_app

app = create_app()
