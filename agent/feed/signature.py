"""minisign-compatible keys and signatures (DESIGN.md §4), Ed25519 through ``cryptography``.

A vendor may sign with the stock ``minisign -S`` and we verify; we sign and ``minisign -V``
verifies; key files go both ways. The formats (https://jedisct1.github.io/minisign/), every
binary part base64-encoded on one line under an ``untrusted comment:`` line:

    public key    "Ed" ‖ key_id[8] ‖ ed25519_public[32]
    secret key    "Ed" ‖ kdf[2] ‖ "B2" ‖ salt[32] ‖ opslimit[8, LE] ‖ memlimit[8, LE]
                  ‖ key_id[8] ‖ seed[32] ‖ ed25519_public[32] ‖ checksum[32]
                  kdf "Sc": the last 104 bytes are XORed with scrypt(password, salt, …);
                  kdf "\\0\\0": stored as is (``minisign -W``, which leaves the checksum zero).
                  checksum = BLAKE2b-256("Ed" ‖ key_id ‖ seed ‖ ed25519_public)
    signature     untrusted comment: <anything, not signed>
                  alg[2] ‖ key_id[8] ‖ signature[64]
                  trusted comment: <text>
                  global_signature[64] = Ed25519(signature ‖ trusted comment bytes)
                  alg "ED" signs BLAKE2b-512(data) (minisign's default); legacy "Ed" signs data.

Every problem with a signature is a ``SignatureError`` and every problem with a key file a
``KeyFileError``, each one line: reading untrusted text never lets a base64, ``ValueError`` or
``cryptography`` exception escape. Only programming mistakes are ``ValueError``s (a comment
with a line break passed to ``sign``, a key id of the wrong length).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.errors import KeyFileError, SignatureError

SIG_ALG_LEGACY = b"Ed"
SIG_ALG_PREHASHED = b"ED"
KDF_SCRYPT = b"Sc"
KDF_NONE = b"\0\0"
CHECKSUM_BLAKE2B = b"B2"

UNTRUSTED_PREFIX = "untrusted comment: "
TRUSTED_PREFIX = "trusted comment: "
DEFAULT_UNTRUSTED_COMMENT = "signature from id1 secret key"

# libsodium's crypto_pwhash_scryptsalsa208sha256_{OPS,MEM}LIMIT_SENSITIVE, which `minisign -G`
# writes (it lowers them only on a machine short of memory).
SCRYPT_OPSLIMIT_SENSITIVE = 33_554_432
SCRYPT_MEMLIMIT_SENSITIVE = 1_073_741_824

# minisign reads the comment lines into fixed buffers (COMMENTMAXBYTES = 1024,
# TRUSTEDCOMMENTMAXBYTES = 8192, counting the prefix, the newline and a NUL) and refuses to sign
# a longer trusted comment; a longer untrusted one would make it misread the next line.
MAX_UNTRUSTED_COMMENT_BYTES = 1024 - len(UNTRUSTED_PREFIX) - 2
MAX_TRUSTED_COMMENT_BYTES = 8192 - len(TRUSTED_PREFIX) - 2

_KEY_ID_BYTES = 8
_PUBLIC_BYTES = 32
_SEED_BYTES = 32
_SIGNATURE_BYTES = 64
_CHECKSUM_BYTES = 32
_SALT_BYTES = 32
_PUBLIC_KEY_BLOB = 2 + _KEY_ID_BYTES + _PUBLIC_BYTES  # 42
_SIGNATURE_BLOB = 2 + _KEY_ID_BYTES + _SIGNATURE_BYTES  # 74
_KEYNUM_SK = _KEY_ID_BYTES + _SEED_BYTES + _PUBLIC_BYTES + _CHECKSUM_BYTES  # 104, what scrypt masks
_SECRET_KEY_BLOB = 2 + 2 + 2 + _SALT_BYTES + 8 + 8 + _KEYNUM_SK  # 158

# hashlib.scrypt takes at most INT_MAX bytes of working memory (minisign's keys need 1 GiB).
_SCRYPT_MAX_MEMORY = 2**31 - 1
# A damaged opslimit could ask for hours of work; allow 16 times what minisign itself writes.
_SCRYPT_MAX_WORK = 16 * (1 << 20) * 8 * 1


# ── public keys ──────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A minisign public key: the 8-byte key id that signatures name, and the Ed25519 key."""

    key_id: bytes
    raw: bytes

    def __post_init__(self) -> None:
        if len(self.key_id) != _KEY_ID_BYTES or len(self.raw) != _PUBLIC_BYTES:
            raise ValueError("a minisign public key is an 8-byte key id and a 32-byte Ed25519 key")

    @classmethod
    def from_base64(cls, text: str) -> PublicKey:
        """Read the one-line ``RW…`` form that ``minisign -G`` prints and agent configs hold."""
        line = text.strip()
        blob = _decode_base64(line)
        if blob is not None and len(blob) == _SECRET_KEY_BLOB:
            raise KeyFileError("this is a minisign secret key, not a public key: use the .pub file")
        if blob is None or len(blob) != _PUBLIC_KEY_BLOB:
            raise KeyFileError(
                f"not a minisign public key: {_preview(line)!r} "
                "(expected the 56-character base64 line that starts with RW)"
            )
        if blob[:2] != SIG_ALG_LEGACY:
            raise KeyFileError(
                f"unsupported public key algorithm {_show_alg(blob[:2])} (minisign keys are 'Ed')"
            )
        return cls(blob[2 : 2 + _KEY_ID_BYTES], blob[2 + _KEY_ID_BYTES :])

    @classmethod
    def from_file_text(cls, text: str) -> PublicKey:
        """Read a minisign ``.pub`` file (comment line, key line), or a bare ``RW…`` line."""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines and lines[0].startswith(UNTRUSTED_PREFIX.rstrip()):
            lines = lines[1:]
        if len(lines) != 1:
            raise KeyFileError(
                "not a minisign public key file: expected an 'untrusted comment:' line "
                "followed by one base64 key line"
            )
        return cls.from_base64(lines[0])

    def to_base64(self) -> str:
        return base64.b64encode(SIG_ALG_LEGACY + self.key_id + self.raw).decode("ascii")

    def to_file_text(self) -> str:
        return f"{UNTRUSTED_PREFIX}minisign public key {self.key_id_hex}\n{self.to_base64()}\n"

    @property
    def key_id_hex(self) -> str:
        """The key id as minisign prints it: the 8 bytes as a little-endian integer, ``%lX``."""
        return _key_id_hex(self.key_id)

    def _ed25519(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw)


# ── secret keys ──────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class SecretKey:
    """A minisign secret key: key id and Ed25519 seed (the public half is derived from it)."""

    key_id: bytes
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key_id) != _KEY_ID_BYTES or len(self.seed) != _SEED_BYTES:
            raise ValueError("a minisign secret key is an 8-byte key id and a 32-byte Ed25519 seed")

    @classmethod
    def generate(cls) -> SecretKey:
        # An Ed25519 secret key is 32 random bytes, exactly as libsodium's crypto_sign_keypair.
        return cls(secrets.token_bytes(_KEY_ID_BYTES), secrets.token_bytes(_SEED_BYTES))

    @classmethod
    def from_file_text(cls, text: str, password: str | None) -> SecretKey:
        """Read a minisign ``.key`` file, encrypted (``Sc``) or not (``minisign -W``).

        A password given for an unencrypted key is ignored, as ``minisign -S`` does.
        """
        blob = _secret_key_blob(text)
        kdf, salt = blob[2:4], blob[6 : 6 + _SALT_BYTES]
        opslimit = int.from_bytes(blob[38:46], "little")
        memlimit = int.from_bytes(blob[46:54], "little")
        keynum_sk = blob[54:]
        if kdf == KDF_SCRYPT:
            if password is None:
                raise KeyFileError("the secret key is encrypted: a password is needed to use it")
            stream = _scrypt_stream(password, salt, opslimit, memlimit)
            keynum_sk = _xor(keynum_sk, stream)
        key_id, secret = keynum_sk[:_KEY_ID_BYTES], keynum_sk[_KEY_ID_BYTES:-_CHECKSUM_BYTES]
        seed, public = secret[:_SEED_BYTES], secret[_SEED_BYTES:]
        checksum = keynum_sk[-_CHECKSUM_BYTES:]
        # `minisign -G -W` leaves the checksum all zeros (it is computed only when encrypting);
        # the public half must still match the seed below.
        unchecked = kdf == KDF_NONE and checksum == bytes(_CHECKSUM_BYTES)
        if not unchecked and not hmac.compare_digest(_checksum(key_id, secret), checksum):
            if kdf == KDF_SCRYPT:
                raise KeyFileError("wrong password for secret key (or the key file is damaged)")
            raise KeyFileError("secret key checksum does not match: the key file is damaged")
        key = cls(key_id, seed)
        if key.public_key().raw != public:
            raise KeyFileError(
                "secret key is inconsistent: its public half does not match its seed"
            )
        return key

    def to_file_text(
        self,
        password: str | None,
        *,
        opslimit: int = SCRYPT_OPSLIMIT_SENSITIVE,
        memlimit: int = SCRYPT_MEMLIMIT_SENSITIVE,
    ) -> str:
        """Write a ``.key`` file that ``minisign -S -s`` accepts.

        With a password the key is scrypt-encrypted with minisign's own (deliberately slow,
        1 GiB) parameters; ``opslimit``/``memlimit`` exist so tests can use cheaper ones.
        Without one it is stored unencrypted, as ``minisign -G -W`` does, but with its checksum
        filled in (minisign leaves it zero and ignores it) so that damage is detected.
        """
        public = self.public_key().raw
        keynum_sk = self.key_id + self.seed + public + _checksum(self.key_id, self.seed + public)
        if password is None:
            header = SIG_ALG_LEGACY + KDF_NONE + CHECKSUM_BLAKE2B + bytes(_SALT_BYTES + 8 + 8)
            comment = "minisign secret key (not encrypted)"
        else:
            salt = secrets.token_bytes(_SALT_BYTES)
            keynum_sk = _xor(keynum_sk, _scrypt_stream(password, salt, opslimit, memlimit))
            header = (
                SIG_ALG_LEGACY + KDF_SCRYPT + CHECKSUM_BLAKE2B + salt
                + opslimit.to_bytes(8, "little") + memlimit.to_bytes(8, "little")
            )
            comment = "minisign encrypted secret key"
        body = base64.b64encode(header + keynum_sk).decode("ascii")
        return f"{UNTRUSTED_PREFIX}{comment}\n{body}\n"

    def public_key(self) -> PublicKey:
        return PublicKey(self.key_id, self._ed25519().public_key().public_bytes_raw())

    def _ed25519(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)


def secret_key_needs_password(text: str) -> bool:
    """Whether a ``.key`` file is encrypted, so a caller asks for a password only when needed."""
    return _secret_key_blob(text)[2:4] == KDF_SCRYPT


def scrypt_parameters(opslimit: int, memlimit: int) -> tuple[int, int, int]:
    """(log2 N, r, p) for scrypt, derived exactly as libsodium's ``pickparams`` does.

    minisign stores only opslimit and memlimit in a key file; libsodium turns them into scrypt's
    parameters, so we must make the same choice to derive the same bytes.
    """
    opslimit = max(opslimit, 32768)
    r = 8
    if opslimit < memlimit // 32:
        n_log2 = _smallest_log2_above(opslimit // (r * 4) // 2)
        p = 1
    else:
        n_log2 = _smallest_log2_above(memlimit // (r * 128) // 2)
        p = min((opslimit // 4) >> n_log2, 0x3FFFFFFF) // r
    return n_log2, r, p


# ── signatures ───────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class VerifiedSignature:
    """What a good signature tells: which trusted key made it and the comment it vouches for."""

    key_id_hex: str
    trusted_comment: str
    prehashed: bool


def sign(
    data: bytes,
    key: SecretKey,
    *,
    trusted_comment: str,
    untrusted_comment: str = DEFAULT_UNTRUSTED_COMMENT,
    prehashed: bool = True,
) -> str:
    """The ``.minisig`` text for ``data``: four lines, each ending in a newline.

    ``prehashed`` (minisign's default, ``ED``) signs the BLAKE2b-512 hash of the data; ``False``
    writes the legacy ``Ed`` form (``minisign -l``). Raises ``ValueError`` for a comment that
    minisign could not read back (a line break, a NUL, or too long).
    """
    _check_comment(trusted_comment, "trusted comment", MAX_TRUSTED_COMMENT_BYTES)
    _check_comment(untrusted_comment, "untrusted comment", MAX_UNTRUSTED_COMMENT_BYTES)
    private = key._ed25519()
    algorithm = SIG_ALG_PREHASHED if prehashed else SIG_ALG_LEGACY
    signature = private.sign(_blake2b_512(data) if prehashed else bytes(data))
    global_signature = private.sign(signature + trusted_comment.encode("utf-8"))
    return (
        f"{UNTRUSTED_PREFIX}{untrusted_comment}\n"
        f"{_encode_base64(algorithm + key.key_id + signature)}\n"
        f"{TRUSTED_PREFIX}{trusted_comment}\n"
        f"{_encode_base64(global_signature)}\n"
    )


def verify(
    data: bytes,
    signature_text: str,
    trusted_keys: Sequence[PublicKey],
    *,
    subject: str = "the signed file",
) -> VerifiedSignature:
    """Check that one of ``trusted_keys`` signed exactly ``data`` and the trusted comment.

    ``subject`` names the data in the error a user reads (``feed.json``). Raises
    ``SignatureError`` for a malformed signature file, an unknown algorithm, a key that is not
    trusted, data that does not match, or an altered trusted comment.
    """
    parsed = _parse_signature(signature_text)
    candidates = [key for key in trusted_keys if key.key_id == parsed.key_id]
    if not candidates:
        trusted = ", ".join(key.key_id_hex for key in trusted_keys) or "none"
        raise SignatureError(
            f"signed by key {_key_id_hex(parsed.key_id)}, which is not a trusted key "
            f"(trusted: {trusted})"
        )
    message = _blake2b_512(data) if parsed.prehashed else data
    signer = next(
        (key for key in candidates if _ed25519_valid(key, parsed.signature, message)), None
    )
    if signer is None:
        raise SignatureError(
            f"signature does not match {subject}: its content was changed after signing, "
            "or the signature belongs to another file"
        )
    signed_comment = parsed.signature + parsed.trusted_comment
    if not _ed25519_valid(signer, parsed.global_signature, signed_comment):
        raise SignatureError(
            "trusted comment was altered: the signature file was edited after signing"
        )
    return VerifiedSignature(
        key_id_hex=signer.key_id_hex,
        trusted_comment=parsed.trusted_comment.decode("utf-8", errors="replace"),
        prehashed=parsed.prehashed,
    )


# ── internals ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _ParsedSignature:
    prehashed: bool
    key_id: bytes
    signature: bytes
    trusted_comment: bytes
    global_signature: bytes


def _parse_signature(signature_text: str | bytes) -> _ParsedSignature:
    def malformed(why: str) -> SignatureError:
        return SignatureError(f"malformed signature file: {why}")

    if isinstance(signature_text, str):
        try:
            raw = signature_text.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:
            raise malformed("it is not UTF-8 text") from None
    else:
        raw = bytes(signature_text)
    # Like minisign (fgets + trim), lines end in "\n" and a trailing "\r" is dropped.
    lines = [line.removesuffix(b"\r") for line in raw.split(b"\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 4:
        raise malformed(
            f"expected 4 lines (untrusted comment, signature, trusted comment, global "
            f"signature), found {len(lines)}"
        )
    if not lines[0].startswith(UNTRUSTED_PREFIX.encode()):
        raise malformed(f"the first line should start with {UNTRUSTED_PREFIX!r}")
    blob = _decode_base64(lines[1])
    if blob is None or len(blob) != _SIGNATURE_BLOB:
        raise malformed("the second line is not a base64 minisign signature")
    algorithm = blob[:2]
    if algorithm not in (SIG_ALG_PREHASHED, SIG_ALG_LEGACY):
        raise SignatureError(
            f"unsupported signature algorithm {_show_alg(algorithm)} "
            "(minisign signatures are 'ED', or legacy 'Ed')"
        )
    if not lines[2].startswith(TRUSTED_PREFIX.encode()):
        raise malformed(f"the third line should start with {TRUSTED_PREFIX!r}")
    global_signature = _decode_base64(lines[3])
    if global_signature is None or len(global_signature) != _SIGNATURE_BYTES:
        raise malformed("the fourth line is not a base64 global signature")
    return _ParsedSignature(
        prehashed=algorithm == SIG_ALG_PREHASHED,
        key_id=blob[2 : 2 + _KEY_ID_BYTES],
        signature=blob[2 + _KEY_ID_BYTES :],
        trusted_comment=lines[2][len(TRUSTED_PREFIX) :],
        global_signature=global_signature,
    )


def _secret_key_blob(text: str) -> bytes:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith(UNTRUSTED_PREFIX.rstrip()):
        lines = lines[1:]
    blob = _decode_base64(lines[0]) if len(lines) == 1 else None
    if blob is not None and len(blob) == _PUBLIC_KEY_BLOB:
        raise KeyFileError("this is a minisign public key, not a secret key: use the .key file")
    if blob is None or len(blob) != _SECRET_KEY_BLOB:
        raise KeyFileError(
            "not a minisign secret key file: expected an 'untrusted comment:' line followed by "
            "one base64 key line"
        )
    if blob[:2] != SIG_ALG_LEGACY:
        raise KeyFileError(
            f"unsupported secret key algorithm {_show_alg(blob[:2])} (expected 'Ed')"
        )
    if blob[2:4] not in (KDF_SCRYPT, KDF_NONE):
        raise KeyFileError(
            f"unsupported key derivation {_show_alg(blob[2:4])} in secret key "
            "(expected scrypt 'Sc', or none)"
        )
    if blob[4:6] != CHECKSUM_BLAKE2B:
        raise KeyFileError(
            f"unsupported checksum {_show_alg(blob[4:6])} in secret key (expected 'B2')"
        )
    return blob


def _scrypt_stream(password: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    """The 104 bytes that mask key id, secret key and checksum: libsodium's scryptsalsa208sha256."""
    n_log2, r, p = scrypt_parameters(opslimit, memlimit)
    n = 1 << n_log2
    # OpenSSL counts scrypt's V array (128·r·(N+2) bytes) and B array (128·r·p) against maxmem.
    needed = 128 * r * (n + 2) + 128 * r * p + (1 << 20)
    if needed > _SCRYPT_MAX_MEMORY or n * r * p > _SCRYPT_MAX_WORK:
        raise KeyFileError(
            f"the secret key asks for scrypt N=2^{n_log2}, r={r}, p={p}, far beyond what "
            "minisign writes: refusing (is the key file damaged?)"
        )
    try:
        return hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=needed, dklen=_KEYNUM_SK
        )
    except (ValueError, MemoryError) as error:
        raise KeyFileError(
            f"cannot derive the key from the password (scrypt N=2^{n_log2}, r={r}, p={p}): {error}"
        ) from None


def _smallest_log2_above(limit: int) -> int:
    """pickparams' loop: the first n in 1..63 with 2**n > limit (63 if none)."""
    n_log2 = 1
    while n_log2 < 63 and (1 << n_log2) <= limit:
        n_log2 += 1
    return n_log2


def _checksum(key_id: bytes, secret_key: bytes) -> bytes:
    material = SIG_ALG_LEGACY + key_id + secret_key
    return hashlib.blake2b(material, digest_size=_CHECKSUM_BYTES).digest()


def _blake2b_512(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=64).digest()


def _ed25519_valid(key: PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key._ed25519().verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _check_comment(text: str, what: str, max_bytes: int) -> None:
    if any(char in text for char in "\r\n\0"):
        raise ValueError(f"the {what} must be one line of text (no line break or NUL)")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ValueError(f"the {what} is {size} bytes; minisign reads at most {max_bytes}")


def _decode_base64(text: str | bytes) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _encode_base64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def _key_id_hex(key_id: bytes) -> str:
    # minisign 0.11 prints le64_load(keynum) with "%" PRIX64: upper case, no zero padding.
    return f"{int.from_bytes(key_id, 'little'):X}"


def _show_alg(tag: bytes) -> str:
    return repr(tag.decode("latin-1"))


def _preview(text: str) -> str:
    return text if len(text) <= 24 else text[:24] + "…"
