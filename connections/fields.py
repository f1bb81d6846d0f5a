"""Fernet-encrypted secret field that fails clearly instead of with a cryptography trace.

Built on django-fernet-fields-v2, with three changes:

* the keys are read from ``settings.FERNET_KEYS`` (newest first) on every use, so a
  change of the settings (tests, key rotation) takes effect without a restart of the
  field; the library caches them on the field instance for the life of the process;
* a value that no key in ``FERNET_KEYS`` decrypts loads as :class:`Undecryptable`
  (keeping the stored ciphertext) instead of raising ``InvalidToken`` while a queryset
  is being iterated: list pages still render, and re-saving the row writes the
  ciphertext back unchanged, so nothing is lost;
* reading such a value from a model instance raises
  :class:`~connections.errors.CredentialError` naming the artifact, its tenant and the
  field — never garbage, never a stack trace from ``cryptography``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db.models.query_utils import DeferredAttribute
from django.utils.encoding import force_bytes, force_str
from fernet_fields import EncryptedTextField
from fernet_fields import hkdf

from .errors import CredentialError

KEY_HINT = (
    "put the key the value was encrypted with back into FERNET_KEYS (newest first, the old "
    "ones after it), or store the secret again and deploy"
)


class Undecryptable:
    """Stands for a stored secret that no key in FERNET_KEYS decrypts.

    Holds the ciphertext (harmless without the key) so that saving the row keeps it.
    Deliberately not a ``str``: it cannot be passed on as a password by mistake.
    """

    __slots__ = ("token", "reason")

    def __init__(self, token: bytes, reason: str) -> None:
        self.token = token
        self.reason = reason

    def __repr__(self) -> str:
        return "<undecryptable secret>"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Undecryptable) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)


@lru_cache(maxsize=16)
def _multifernet(keys: tuple[str, ...], use_hkdf: bool) -> MultiFernet:
    raw = [hkdf.derive_fernet_key(k) for k in keys] if use_hkdf else list(keys)
    return MultiFernet([Fernet(k) for k in raw])


def current_fernet() -> MultiFernet | None:
    """MultiFernet over FERNET_KEYS as the settings say now (first key encrypts); None if empty."""
    keys = tuple(k for k in (getattr(settings, "FERNET_KEYS", None) or []) if k)
    if not keys:
        return None
    return _multifernet(keys, bool(getattr(settings, "FERNET_USE_HKDF", True)))


NO_KEYS = "FERNET_KEYS is empty"
UNKNOWN_KEY = "the key it was encrypted with is not in FERNET_KEYS"


def decrypt_token(token: bytes) -> str | Undecryptable:
    fernet = current_fernet()
    if fernet is None:
        return Undecryptable(token, NO_KEYS)
    try:
        return force_str(fernet.decrypt(token))
    except InvalidToken:
        return Undecryptable(token, UNKNOWN_KEY)


def token_problem(token: bytes | memoryview | None) -> str | None:
    """Why a stored token cannot be decrypted with FERNET_KEYS, or None when it can (or is
    NULL). Checks its signature only (Fernet's extract_timestamp): nothing is decrypted, so
    no secret is ever in memory for the check, and it costs a fraction of a decryption."""
    if token is None:
        return None
    fernet = current_fernet()
    if fernet is None:
        return NO_KEYS
    try:
        fernet.extract_timestamp(bytes(token))
    except InvalidToken:
        return UNKNOWN_KEY
    return None


def encrypt_text(value: str) -> bytes:
    fernet = current_fernet()
    if fernet is None:
        raise CredentialError(
            "Cannot encrypt a secret: FERNET_KEYS is empty.",
            hint="set FERNET_KEYS (comma-separated Fernet keys, newest first)",
        )
    return fernet.encrypt(force_bytes(value))


class SecretDescriptor(DeferredAttribute):
    """Reading an undecryptable secret raises CredentialError naming the artifact.

    A data descriptor (it defines __set__), so that it is consulted even when the value
    is already in the instance's __dict__.
    """

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        if instance is not None and isinstance(value, Undecryptable):
            raise CredentialError(describe_failure(instance, self.field, value), hint=KEY_HINT)
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


def describe_failure(instance: Any, field: Any, value: Undecryptable) -> str:
    verbose = getattr(instance._meta, "verbose_name", instance.__class__.__name__)
    name = getattr(instance, "name", None) or f"#{instance.pk}"
    tenant = ""
    if getattr(instance, "tenant_id", None) is not None:
        try:
            tenant = f" in tenant '{instance.tenant}'"
        except Exception:  # the tenant row itself is not what we report on
            tenant = f" in tenant #{instance.tenant_id}"
    return f"Cannot decrypt the {field.verbose_name} of {verbose} '{name}'{tenant}: {value.reason}."


class EncryptedSecretField(EncryptedTextField):
    """A text secret encrypted with Fernet under FERNET_KEYS; see the module docstring."""

    descriptor_class = SecretDescriptor

    @property  # type: ignore[override]
    def fernet(self) -> MultiFernet:  # the library's cached_property would pin the keys
        fernet = current_fernet()
        if fernet is None:
            raise CredentialError("FERNET_KEYS is empty.", hint="set FERNET_KEYS")
        return fernet

    def from_db_value(self, value: Any, expression: Any, connection: Any, *args: Any) -> Any:
        if value is None:
            return None
        return decrypt_token(bytes(value))

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        # Bypass the raising descriptor: an undecryptable value is written back as it was.
        return model_instance.__dict__.get(self.attname)

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Undecryptable):
            return connection.Database.Binary(value.token)
        return connection.Database.Binary(encrypt_text(self.to_python(value)))

    def value_from_object(self, obj: Any) -> Any:
        return obj.__dict__.get(self.attname)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, Undecryptable) or value is None:
            return value
        return force_str(value)
