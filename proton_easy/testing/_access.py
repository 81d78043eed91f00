"""Who may do what on the test broker: extra logins, permissions, address settings.

:class:`Access` checks what :class:`~proton_easy.testing.ArtemisBroker` was given for
``users``, ``permissions`` and ``address_settings`` (before anything starts), and renders it
as Artemis configuration text: lines of ``broker.properties`` (``securityRoles."<match>"...``,
``addressSettings."<match>"...``) and the ``artemis-users.properties`` /
``artemis-roles.properties`` files of the JAAS ``PropertiesLoginModule``. The local
distribution and the Docker image get the same texts (see :func:`._tls_config.instance_files`).

Passwords are written as Artemis's own salted hashes (``ENC(1024:salt:hash)``, PBKDF2 with
HMAC-SHA1, what ``artemis create`` and ``artemis mask --hash`` write), never in clear.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

#: The role of the broker's main user: every permission on every address.
MAIN_ROLE = "amq"

#: Artemis's permissions, as ``broker.properties`` names them (``securityRoles`` keys).
PERMISSIONS = (
    "send", "consume", "browse", "createAddress", "deleteAddress", "createDurableQueue",
    "deleteDurableQueue", "createNonDurableQueue", "deleteNonDurableQueue", "manage",
    "view", "edit",
)
# What `artemis create` gives role amq on "#" (view and edit are management RBAC, off here).
_MAIN_ROLE_PERMISSIONS = tuple(p for p in PERMISSIONS if p not in ("view", "edit"))

# Artemis 2.40.0's address settings (AddressSettings' bean properties). Artemis ignores an
# unknown key in broker.properties without a word, so a typo is caught here instead.
ADDRESS_SETTINGS = (
    "addressFullMessagePolicy", "autoCreateAddresses", "autoCreateDeadLetterResources",
    "autoCreateExpiryResources", "autoCreateJmsQueues", "autoCreateJmsTopics",
    "autoCreateQueues", "autoDeleteAddresses", "autoDeleteAddressesDelay",
    "autoDeleteAddressesSkipUsageCheck", "autoDeleteCreatedQueues", "autoDeleteJmsQueues",
    "autoDeleteJmsTopics", "autoDeleteQueues", "autoDeleteQueuesDelay",
    "autoDeleteQueuesMessageCount", "autoDeleteQueuesSkipUsageCheck", "configDeleteAddresses",
    "configDeleteDiverts", "configDeleteQueues", "deadLetterAddress", "deadLetterQueuePrefix",
    "deadLetterQueueSuffix", "defaultAddressRoutingType", "defaultConsumerWindowSize",
    "defaultConsumersBeforeDispatch", "defaultDelayBeforeDispatch", "defaultExclusiveQueue",
    "defaultGroupBuckets", "defaultGroupFirstKey", "defaultGroupRebalance",
    "defaultGroupRebalancePauseDispatch", "defaultLastValueKey", "defaultLastValueQueue",
    "defaultMaxConsumers", "defaultNonDestructive", "defaultPurgeOnNoConsumers",
    "defaultQueueRoutingType", "defaultRingSize", "enableIngressTimestamp", "enableMetrics",
    "expiryAddress", "expiryDelay", "expiryQueuePrefix", "expiryQueueSuffix", "IDCacheSize",
    "initialQueueBufferSize", "managementBrowsePageSize", "managementMessageAttributeSizeLimit",
    "maxDeliveryAttempts", "maxExpiryDelay", "maxReadPageBytes", "maxReadPageMessages",
    "maxRedeliveryDelay", "maxSizeBytes", "maxSizeBytesRejectThreshold", "maxSizeMessages",
    "messageCounterHistoryDayLimit", "minExpiryDelay", "noExpiry", "pageCacheMaxSize",
    "pageFullMessagePolicy", "pageLimitBytes", "pageLimitMessages", "pageSizeBytes",
    "prefetchPageBytes", "prefetchPageMessages", "queuePrefetch",
    "redeliveryCollisionAvoidanceFactor", "redeliveryDelay", "redeliveryMultiplier",
    "redistributionDelay", "retroactiveMessageCount", "sendToDLAOnNoRoute",
    "slowConsumerCheckPeriod", "slowConsumerPolicy", "slowConsumerThreshold",
    "slowConsumerThresholdMeasurementUnit",
)

# Names that end up as keys of .properties files: no separators, quotes or blanks.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+\-]*$")
# Address matches: Artemis's wildcards '#' (any words) and '*' (one word), words split by '.'.
_MATCH = re.compile(r"^[A-Za-z0-9_.#*\-]+$")

SettingValue = Union[bool, int, float, str]
UsersArg = Optional[Mapping[str, Tuple[str, Union[str, Sequence[str]]]]]
PermissionsArg = Optional[Mapping[str, Mapping[str, Union[str, Sequence[str]]]]]
SettingsArg = Optional[Mapping[str, Mapping[str, SettingValue]]]


def _key(name: str) -> str:
    """A canonical setting name from ``autoCreateQueues``, ``auto-create-queues`` or
    ``auto_create_queues`` (case does not matter)."""
    return re.sub(r"[-_]", "", name).lower()


_SETTINGS_BY_KEY = {_key(name): name for name in ADDRESS_SETTINGS}
_PERMISSIONS_BY_KEY = {_key(name): name for name in PERMISSIONS}


def _names(value: Union[str, Sequence[str]], what: str) -> Tuple[str, ...]:
    """A role or permission list: one string, or a sequence of strings."""
    items = [value] if isinstance(value, str) else value
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"{what} must be a string or a list of strings, not {value!r}") from None
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} must be strings, not {item!r}")
    return tuple(dict.fromkeys(items))  # in order, without repeats


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} {name!r}: use letters, digits and '_.@+-' (not first)")
    return name


def _check_match(match: Any, what: str) -> str:
    if not isinstance(match, str) or not _MATCH.match(match):
        raise ValueError(f"{what}: address match {match!r}: use letters, digits, '_.-' and the "
                         "wildcards '#' (any words) and '*' (one word)")
    return match


def _render_value(value: SettingValue, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if not value or any(ch in value for ch in "\r\n") or value != value.strip():
            raise ValueError(f"{where}: {value!r} must be one line without surrounding blanks")
        return value.replace("\\", "\\\\")
    raise TypeError(f"{where} must be a bool, a number or a string, not {value!r}")


def hash_password(password: str, *, iterations: int = 1024) -> str:
    """Artemis's salted hash of a password, as ``artemis mask --hash`` writes it:
    ``ENC(iterations:salt:hash)``, PBKDF2 with HMAC-SHA1, 32 bytes of salt, 64 of hash.

    Example::

        hash_password("s3cret")   # 'ENC(1024:9F3A...:51C0...)'
    """
    salt = secrets.token_bytes(32)
    digest = hashlib.pbkdf2_hmac("sha1", password.encode("utf-8"), salt, iterations, dklen=64)
    return f"ENC({iterations}:{salt.hex().upper()}:{digest.hex().upper()})"


@dataclass(frozen=True)
class Access:
    """Extra logins, the permissions of their roles, and address settings, checked.

    ``users`` maps a login to ``(password, roles)``; ``permissions`` maps an address match to
    ``{role: permissions}``; ``address_settings`` maps an address match to
    ``{setting: value}``. Artemis applies the security settings of the most specific match
    only, so every match named in ``permissions`` also grants role ``amq`` (the main user's)
    every permission: the main user can always do everything. Address settings, on the other
    hand, are merged with those of less specific matches (``#``: auto-create, DLQ ...).

    The ``repr`` shows logins and roles, never passwords.

    Example::

        access = Access.build(
            users={"reader": ("pw", ["viewer"])},
            permissions={"#": {"viewer": ["consume", "browse"]}},
            address_settings={"strict.#": {"autoCreateQueues": False}},
        )
        access.broker_properties()   # 'securityRoles."#".amq.send=true\\n...'
    """

    users: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # login -> roles
    permissions: Dict[str, Dict[str, Tuple[str, ...]]] = field(default_factory=dict)
    address_settings: Dict[str, Dict[str, str]] = field(default_factory=dict)  # rendered
    _passwords: Dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        *,
        users: UsersArg = None,
        permissions: PermissionsArg = None,
        address_settings: SettingsArg = None,
        main_user: Optional[str] = None,
    ) -> Access:
        """Check the three arguments of :class:`~proton_easy.testing.ArtemisBroker` (a
        ``ValueError`` or ``TypeError`` naming the bad part, never a password)."""
        roles_of: Dict[str, Tuple[str, ...]] = {}
        passwords: Dict[str, str] = {}
        for login, entry in dict(users or {}).items():
            _check_name(login, "user")
            if login == main_user:
                raise ValueError(f"user {login!r} is the broker's main user: give it another "
                                 "name (the main user has role 'amq' and every permission)")
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise TypeError(f"users[{login!r}] must be (password, roles)")
            password, roles = entry
            if not isinstance(password, str) or not password or any(
                    ch.isspace() for ch in password):
                raise ValueError(f"the password of user {login!r} must be a non-empty string "
                                 "without whitespace")
            roles_of[login] = tuple(_check_name(role, f"users[{login!r}]: role")
                                    for role in _names(roles, f"the roles of user {login!r}"))
            passwords[login] = password

        grants: Dict[str, Dict[str, Tuple[str, ...]]] = {}
        for match, by_role in dict(permissions or {}).items():
            _check_match(match, "permissions")
            if not isinstance(by_role, Mapping):
                raise TypeError(f"permissions[{match!r}] must map roles to permissions, "
                                f"e.g. {{'viewer': ['consume', 'browse']}}")
            granted: Dict[str, Tuple[str, ...]] = {}
            for role, perms in by_role.items():
                _check_name(role, f"permissions[{match!r}]: role")
                names = []
                for perm in _names(perms, f"permissions[{match!r}][{role!r}]"):
                    known = _PERMISSIONS_BY_KEY.get(_key(perm))
                    if known is None:
                        raise ValueError(f"permissions[{match!r}][{role!r}]: unknown "
                                         f"permission {perm!r}; Artemis has "
                                         f"{', '.join(PERMISSIONS)}")
                    names.append(known)
                granted[role] = tuple(dict.fromkeys(names))
            grants[match] = granted

        settings: Dict[str, Dict[str, str]] = {}
        for match, values in dict(address_settings or {}).items():
            _check_match(match, "address_settings")
            if not isinstance(values, Mapping):
                raise TypeError(f"address_settings[{match!r}] must map settings to values, "
                                "e.g. {'autoCreateQueues': False}")
            rendered: Dict[str, str] = {}
            for name, value in values.items():
                known = _SETTINGS_BY_KEY.get(_key(name)) if isinstance(name, str) else None
                if known is None:
                    close = difflib.get_close_matches(str(name), ADDRESS_SETTINGS, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise ValueError(f"address_settings[{match!r}]: unknown setting "
                                     f"{name!r}{hint}")
                rendered[known] = _render_value(value, f"address_settings[{match!r}][{name!r}]")
            settings[match] = rendered
        return cls(users=roles_of, permissions=grants, address_settings=settings,
                   _passwords=passwords)

    def __bool__(self) -> bool:
        return bool(self.users or self.permissions or self.address_settings)

    def password(self, login: str) -> str:
        """The password of an extra login (``KeyError`` for an unknown one)."""
        return self._passwords[login]

    # -- rendering ------------------------------------------------------------------------
    def broker_properties(self) -> str:
        """The ``broker.properties`` lines for the permissions and address settings ('' when
        there are none).

        Example::

            Access.build(address_settings={"strict.#": {"autoCreateQueues": False}})
                .broker_properties()
            # 'addressSettings."strict.#".autoCreateQueues=false\\n'
        """
        lines: List[str] = []
        for match, by_role in self.permissions.items():
            main = _MAIN_ROLE_PERMISSIONS + by_role.get(MAIN_ROLE, ())
            granted = {MAIN_ROLE: tuple(dict.fromkeys(main))}
            granted.update((role, perms) for role, perms in by_role.items() if role != MAIN_ROLE)
            for role, perms in granted.items():
                lines.extend(f'securityRoles."{match}".{role}.{perm}=true' for perm in perms)
        for match, values in self.address_settings.items():
            lines.extend(f'addressSettings."{match}".{name}={value}'
                         for name, value in values.items())
        return "".join(line + "\n" for line in lines)

    def users_properties(self, main_user: str, main_password: str) -> str:
        """``artemis-users.properties``: the main user and the extra logins, hashed."""
        lines = ["# Made by proton_easy.testing: logins and their salted password hashes."]
        for login, password in ((main_user, main_password), *self._passwords.items()):
            lines.append(f"{_escape_key(login)} = {hash_password(password)}")
        return "\n".join(lines) + "\n"

    def roles_properties(self, main_user: str) -> str:
        """``artemis-roles.properties``: role ``amq`` for the main user, the extra logins'
        roles for them."""
        members: Dict[str, List[str]] = {MAIN_ROLE: [main_user]}
        for login, roles in self.users.items():
            for role in roles:
                members.setdefault(role, []).append(login)
        lines = ["# Made by proton_easy.testing: role = logins."]
        lines += [f"{_escape_key(role)} = {','.join(logins)}" for role, logins in members.items()]
        return "\n".join(lines) + "\n"


def _escape_key(key: str) -> str:
    """Escape a key of a Java .properties file."""
    return re.sub(r"([\\=: #!])", r"\\\1", key)
