"""Business logic. Admin, views, tasks and management commands only call these modules."""
