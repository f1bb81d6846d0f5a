"""Access: who may do what in which tenant (tenancy), API tokens (api_tokens), and the one way to find a tenant's connection by name (lookup)."""
