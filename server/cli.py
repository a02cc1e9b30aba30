"""Command line: ``python -m server.cli <command>`` (a Flask CLI group over ``create_app``).

run           everything on one machine: migrate, deploy workflows/, seed, then
              web server + embedded Redis (if REDIS_URL is unset) + RQ worker
              with scheduler + timer poller; Ctrl-C stops them all
deploy        validate and deploy the workflows folder
validate      validate BPMN/DMN files without deploying
seed          load demo data from seeds/
worker        an RQ worker (with scheduler)
poll-timers   the timer poller
create-user   add a user
db ...        Alembic migrations (upgrade, migrate, ...)
"""

from __future__ import annotations

from flask.cli import FlaskGroup, routes_command, shell_command

from .app import create_app

cli = FlaskGroup(create_app=create_app, add_default_commands=False, load_dotenv=False, help=__doc__)
cli.add_command(shell_command)
cli.add_command(routes_command)

if __name__ == "__main__":
    cli()
