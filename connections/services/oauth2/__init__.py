"""OAuth2 for mail logins: provider endpoints, access tokens (cached, single-flight refresh)
and the authorization-code flow. See docs/oauth2.md.

    from connections.services.oauth2 import tokens
    token = tokens.access_token(credential_id=cred.pk)   # AccessToken; .value is the secret
    # for a connection: its token requests go through its proxy (proxying.for_connection)
    token = tokens.access_token(credential_id=cred.pk, proxy=proxying.for_connection(connection))
"""
