# Dates written one way across the admin: Django's own cells (poll runs, outbox, stored
# messages) like TenantMail's (connections.services.common.dates). Input formats stay Django's.
DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
