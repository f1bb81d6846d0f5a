"""Fast persistence paths (COPY, UPDATE … FROM VALUES, prepared statements, asynchronous commit), each beside its plain ORM version."""
