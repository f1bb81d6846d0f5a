#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys


# Commands print their own summary; their INFO log lines would repeat it on stderr. So they
# log warnings and errors only, unless LOG_LEVEL is set in the environment. The servers keep
# the configured level: runserver here; Celery worker/beat and gunicorn do not run manage.py.
SERVER_COMMANDS = {"runserver"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantmail.settings")
    if len(sys.argv) > 1 and sys.argv[1] not in SERVER_COMMANDS:
        os.environ.setdefault("LOG_LEVEL", "WARNING")  # wins over .env's LOG_LEVEL (for the servers)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
