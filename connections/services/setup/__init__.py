"""Guided setup ("Add mailbox"): server settings proposed from an e-mail address (provider
presets, autoconfig/autodiscover documents, RFC 6186 SRV records), tested, then the artifact
and the connections created and deployed in one go. See docs/guided-setup.md."""
