"""Joint login: a partner product's link carries a one-time token the partner exchanges for user data.

In a layout, a partner product's ``action_url`` is the partner's
``joint_login_url`` with ``token=<one-time token>`` (about a minute of life;
``joint_login_ttl_seconds``). The partner's server exchanges it at
``POST /partner/v1/joint-login/exchange`` (HMAC-signed like postbacks) for the
fields the user consents to share with that partner:

- ``user_ref``: a pseudonymous id of the user for that partner only (two
  partners cannot link their users through it);
- ``phone_sha256``, ``age_band`` and ``region`` when the profile has them.

The exchange is refused for a forged, expired or already used token, a token
issued for another partner, or a user who does not consent to share with the
partner at exchange time; every exchange that answers is recorded in the
data-share log first.

The token passes through the user's browser and the partner's hands before the
exchange, so it must not reveal who the user is (guard 5): the user id inside
is sealed (see :class:`JointLoginTokens`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import metrics
from ..domain.users import UserProfile
from ..store.connection import RedisClient
from .access import Forbidden, Unauthorized
from .tokens import InvalidToken, TokenSigner
from ..store.data_shares import DataShareStore
from ..store.keys import Keys
from ..domain.signing import SignatureError, read_headers, verify

if TYPE_CHECKING:
    from .layouts import Serving

PURPOSE = "joint_login"
SHARED_FIELDS = ("user_ref", "phone_sha256", "age_band", "region")
TOKEN_PARAM = "token"
# How long a used token's mark outlives the token itself (clock skew between machines).
USED_MARK_GRACE_SECONDS = 120


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def user_ref(secret: str, partner_id: str, user_id: str) -> str:
    """The user's pseudonymous id for ``partner_id``: stable for that partner, unlinkable across partners."""
    digest = hmac.new(secret.encode(), f"wallet-market.user-ref|{partner_id}|{user_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class JointLoginGrant:
    """What a genuine, unexpired token names."""

    token_id: str
    user_id: str
    partner_id: str
    product_id: str
    expires_at: int


class JointLoginTokens:
    """One-time joint-login tokens: signed, short-lived, with the user id sealed.

    The payload is signed with :class:`TokenSigner` (its own salt). The user id
    is encrypted with AES-256-GCM (``cryptography``) under a key derived from
    the service secret, with a fresh random 96-bit nonce per token that is also
    the token's one-time id; the partner id is bound in as associated data.
    """

    def __init__(self, secret: str, ttl_seconds: int):
        self._signer = TokenSigner(secret, salt="wallet-market.joint-login")
        self._seal = AESGCM(hmac.new(secret.encode(), b"wallet-market.joint-login.seal", hashlib.sha256).digest())
        self.ttl_seconds = ttl_seconds

    def mint(self, user_id: str, partner_id: str, product_id: str, now: float | None = None) -> str:
        """A new token for ``user_id`` to log in at ``partner_id`` for ``product_id``."""
        nonce = os.urandom(12)
        sealed = self._seal.encrypt(nonce, user_id.encode(), partner_id.encode())
        payload = {"j": _b64(nonce), "u": _b64(sealed), "p": partner_id, "pr": product_id}
        return self._signer.sign(payload, self.ttl_seconds, now=now)

    def open(self, token: str, now: float | None = None) -> JointLoginGrant:
        """The grant of a genuine, unexpired token; :class:`InvalidToken` otherwise."""
        body = self._signer.verify(token, now=now)
        try:
            nonce = _unb64(body["j"])
            partner_id = str(body["p"])
            user_id = self._seal.decrypt(nonce, _unb64(body["u"]), partner_id.encode()).decode()
            return JointLoginGrant(
                token_id=body["j"],
                user_id=user_id,
                partner_id=partner_id,
                product_id=str(body["pr"]),
                expires_at=int(body["exp"]),
            )
        except (KeyError, TypeError, ValueError, InvalidTag):
            raise InvalidToken("malformed") from None


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query string (existing parameters kept)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def shared_fields(profile: UserProfile) -> tuple[str, ...]:
    """The fields a joint login shares for ``profile``: the pseudonymous ref, then what the profile has."""
    fields = ["user_ref"]
    if profile.phone_sha256:
        fields.append("phone_sha256")
    if profile.age_band:
        fields.append("age_band")
    if profile.region:
        fields.append("region")
    return tuple(fields)


class JointLogin:
    """Mints joint-login links for layouts and answers partners' exchanges."""

    def __init__(
        self,
        tokens: JointLoginTokens,
        client: RedisClient,
        keys: Keys,
        shares: DataShareStore,
        partner_secret: Callable[[str], str | None],
        *,
        ref_secret: str,
        replay_window_seconds: int,
    ):
        self.tokens = tokens
        self.client = client
        self.keys = keys
        self.shares = shares
        self.partner_secret = partner_secret
        self.ref_secret = ref_secret
        self.replay_window_seconds = replay_window_seconds

    # -- the layout hook ---------------------------------------------------------
    def action_url(self, product_id: str, user_id: str | None, serving: Serving) -> str:
        """``LayoutService.action_url`` hook: a joint-login link for a logged-in user's partner product.

        In-house products, visitors and partners without a ``joint_login_url``
        keep the catalogue's ``action_url``.
        """
        product = serving.catalogue.products.get(product_id)
        if product is None:
            return ""
        if user_id is None or product.partner_id is None:
            return product.action_url
        partner = serving.catalogue.partners.get(product.partner_id)
        if partner is None or not partner.joint_login_url:
            return product.action_url
        token = self.tokens.mint(user_id, partner.partner_id, product_id)
        return with_query(partner.joint_login_url, **{TOKEN_PARAM: token})

    # -- the partner's side ------------------------------------------------------
    def authenticate(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        """The partner that signed this request; :class:`Unauthorized` (401) otherwise."""
        try:
            partner_id, timestamp, signature = read_headers(headers)
        except SignatureError as exc:
            raise Unauthorized("the request is not signed", {"X-Signature": [exc.reason]}) from None
        secret = self.partner_secret(partner_id)
        if not secret:
            raise Unauthorized("unknown partner", {"X-Partner-Id": ["unknown partner"]})
        try:
            verify(secret, timestamp, signature, body, self.replay_window_seconds, now=now)
        except SignatureError as exc:
            metrics.JOINT_LOGIN_EXCHANGES.labels(partner_id, exc.reason).inc()
            raise Unauthorized(f"signature refused: {exc.reason}", {"X-Signature": [exc.reason]}) from None
        return partner_id

    def exchange(self, partner_id: str, token: str, now: float | None = None) -> dict[str, Any]:
        """Trade a one-time token for the data the user consents to share with ``partner_id``.

        Refused with :class:`Forbidden` (403) naming the reason in ``errors``:
        a bad, expired, used or foreign token (``token``), or no consent
        (``consent``). A token is used up by its first exchange, answered or not.
        """
        try:
            grant = self.tokens.open(token, now=now)
        except InvalidToken as exc:
            raise self._refusal(partner_id, exc.reason, "token", f"joint-login token refused: {exc.reason}") from None
        if grant.partner_id != partner_id:
            raise self._refusal(partner_id, "wrong_partner", "token", "this token was issued for another partner")
        first_use = self.client.set(
            self.keys.joint_login_token(grant.token_id),
            partner_id,
            nx=True,
            ex=self.tokens.ttl_seconds + USED_MARK_GRACE_SECONDS,
        )
        if not first_use:
            raise self._refusal(partner_id, "used", "token", "this token was already used")
        consented = self.shares.record_send(
            grant.user_id,
            partner_id,
            PURPOSE,
            request_id=grant.token_id,
            product_id=grant.product_id,
            fields_for=shared_fields,
            now=now,
        )
        if consented is None:
            raise self._refusal(
                partner_id, "no_consent", "consent", "the user does not consent to share data with this partner"
            )
        metrics.DATA_SHARES.labels(partner_id, PURPOSE).inc()
        metrics.JOINT_LOGIN_EXCHANGES.labels(partner_id, "ok").inc()
        profile = consented.profile
        values = {
            "user_ref": user_ref(self.ref_secret, partner_id, grant.user_id),
            "phone_sha256": profile.phone_sha256,
            "age_band": profile.age_band,
            "region": profile.region,
        }
        answer: dict[str, Any] = {
            "partner_id": partner_id,
            "product_id": grant.product_id,
            "fields": list(consented.fields),
        }
        answer.update({name: values[name] if name in consented.fields else None for name in SHARED_FIELDS})
        return answer

    @staticmethod
    def _refusal(partner_id: str, reason: str, field: str, message: str) -> Forbidden:
        metrics.JOINT_LOGIN_EXCHANGES.labels(partner_id, reason).inc()
        return Forbidden(message, {field: [reason]})
