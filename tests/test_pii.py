from __future__ import annotations

import hmac

import pytest

from yuekang.pii import BlindIndex, PiiCipher, PiiDecryptionError


@pytest.mark.parametrize(
    "key",
    [b"k" * 32, b"a-key-longer-than-one-sha256-block-" * 3, b"", b"\x00\xff" * 16],
    ids=["32-bytes", "longer-than-a-block", "empty", "binary"],
)
@pytest.mark.parametrize("value", ["prc_id:11010519491231002X", "", "张小三"])
def test_blind_index_is_hmac_sha256(key: bytes, value: str) -> None:
    # Indexes written before the precomputed pads must still match: it is HMAC, byte for byte.
    expected = hmac.digest(key, b"doc\x00" + value.encode(), "sha256")
    assert BlindIndex(key)("doc", value) == expected


@pytest.mark.parametrize(
    "key", [b"k" * 32, b"a-key-longer-than-one-sha256-block-" * 3], ids=["32-bytes", "long"]
)
@pytest.mark.parametrize("prefix", ["prc_id:", "", "张:"])
@pytest.mark.parametrize("value", ["11010519491231002X", "", "张小三"])
def test_a_prefixed_blind_index_is_the_same_hmac(key: bytes, prefix: str, value: str) -> None:
    # Feeds index with it and identities without: a fact must meet its person's binding.
    expected = hmac.digest(key, b"doc\x00" + (prefix + value).encode(), "sha256")
    index = BlindIndex(key).prefixed("doc", prefix)
    assert index(value) == expected
    assert index(value) == expected  # the hashed prefix is copied, not used up


def test_blind_index_separates_domains_and_keys() -> None:
    index = BlindIndex(b"k" * 32)
    assert index("doc", "x") != index("phone", "x")
    assert index("doc", "x") != BlindIndex(b"j" * 32)("doc", "x")


def test_ciphertext_is_bound_to_its_row() -> None:
    cipher = PiiCipher({"k1": b"\x01" * 32}, "k1")
    sealed, key_id = cipher.encrypt("张小三", context="identities.name:1")
    assert cipher.decrypt(sealed, key_id=key_id, context="identities.name:1") == "张小三"
    with pytest.raises(PiiDecryptionError):
        cipher.decrypt(sealed, key_id=key_id, context="identities.name:2")


def test_document_index_is_stable() -> None:
    # Facts filed by feeds and identities bound later must meet on this exact value.
    from yuekang.residents.documents import DocType
    from yuekang.residents.service import doc_index

    index = BlindIndex(b"k" * 32)
    assert doc_index(index, DocType.PRC_ID, "11010519491231002X") == hmac.digest(
        b"k" * 32, b"doc\x00prc_id:11010519491231002X", "sha256"
    )


def test_the_feeds_document_indexer_gives_the_same_index_for_every_type() -> None:
    from yuekang.residents.documents import DocType
    from yuekang.residents.service import doc_index, doc_indexer

    index = BlindIndex(b"k" * 32)
    indexer = doc_indexer(index)
    numbers = {t: f"{t.value}-number" for t in DocType}
    assert {t: indexer(t, n) for t, n in numbers.items()} == {
        t: doc_index(index, t, n) for t, n in numbers.items()
    }
    assert len({indexer(t, "same") for t in DocType}) == len(DocType)
