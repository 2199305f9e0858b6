"""Card authentication in the simulator (docs/card-auth.md): crypto, the card's side, the PSAM's side.

In process only.  Expected values are computed here a second time, straight from the document,
with ``cryptography``'s ciphers and factors written out as hex from the persona files — never with
:mod:`sscard.sim.crypto` — so a slip in the simulator's diversification cannot agree with itself.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.algorithms import SM4

from sscard.errors import ConfigError
from sscard.sim import SimulatedCard, SimulatedPsam, VpcdLink, list_personas, list_psams, load_persona, load_psam
from sscard.sim.crypto import (
    Algorithm,
    CardData,
    FactorPart,
    UnsupportedAlgorithm,
    algorithm_of,
    block_size,
    build_factor,
    diversify,
    diversify_levels,
    encrypt,
    historical_bytes,
    pad,
)
from sscard.sim.keys import KeyUsage, load_test_keys
from sscard.transports.sim import SimReader

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SIM = Path(__file__).resolve().parents[1] / "src" / "sscard" / "sim"
KEYS = tomllib.loads((SIM / "data" / "test-keys.toml").read_text(encoding="utf-8"))["keysets"]
SELECT_SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
SELECT_DF01 = "00A4000002DF01"
R = bytes.fromhex("1122334455667788")
R16 = R * 2  # INTERNAL AUTHENTICATE data: 16 bytes (docs/card-reference.md §2)
CHALLENGE = bytes.fromhex("A1B2C3D4E5F60718")


# --- an independent computation, from docs/card-auth.md --------------------------------------


def ecb(algorithm: int, key: bytes, data: bytes) -> bytes:
    cipher = TripleDES(key + key[:8]) if algorithm == 1 else SM4(key)
    encryptor = Cipher(cipher, modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def div(algorithm: int, key: bytes, factor: bytes) -> bytes:
    inverted = bytes(b ^ 0xFF for b in factor)
    if algorithm == 1:
        return ecb(1, key, factor) + ecb(1, key, inverted)
    return ecb(3, key, factor + inverted)


def card_key(algorithm: int, master: bytes, *factors: str) -> bytes:
    key = master
    for factor in factors:
        key = div(algorithm, key, bytes.fromhex(factor))
    return key


def master(keyset: str, usage: str, algorithm: int) -> bytes:
    return bytes.fromhex(KEYS[keyset][f"{usage}_{'3des' if algorithm == 1 else 'sm4'}"])


def cryptogram(algorithm: int, key: bytes, data: bytes) -> bytes:
    """``E(K, pad(x))``: 00-padding to the block (8 bytes 3DES, 16 SM4)."""
    block = 8 if algorithm == 1 else 16
    return ecb(algorithm, key, data + b"\x00" * (-len(data) % block))


#: persona -> (algorithm, IA factor, RKSSSE factors) written out from its TOML and the default profile:
#: IA = idcode[8:16]; RKSSSE = region ‖ "sh" ‖ 000000, then idcode[8:16].
CARDS = {
    "typical": (1, "00A3C1E52B7D9F40", ("110100" + "7368" + "000000", "00A3C1E52B7D9F40")),
    "v3": (3, "00E8B4F01C2D3E4F", ("540100" + "7368" + "000000", "00E8B4F01C2D3E4F")),
    "v3_3des": (1, "00C8D9EAFB0C1D2E", ("330100" + "7368" + "000000", "00C8D9EAFB0C1D2E")),
    "counterfeit": (1, "00B7C3D9E14F6A82", ("110100" + "7368" + "000000", "00B7C3D9E14F6A82")),
}


def ia_answer(persona: str, keyset: str = "test") -> bytes:
    algorithm, factor, _ = CARDS[persona]
    return cryptogram(algorithm, card_key(algorithm, master(keyset, "ia", algorithm), factor), R16)


def rk_cryptogram(persona: str, challenge: bytes, keyset: str = "test") -> bytes:
    algorithm, _, factors = CARDS[persona]
    return cryptogram(algorithm, card_key(algorithm, master(keyset, "rk", algorithm), *factors), challenge)


# --- helpers ------------------------------------------------------------------------------------


def tx(target: SimulatedCard | SimulatedPsam, apdu: str) -> str:
    return target.process(bytes.fromhex(apdu.replace(" ", ""))).hex().upper()


def selected(persona: str, challenge: bytes = CHALLENGE) -> SimulatedCard:
    target = SimulatedCard(load_persona(persona), rng=lambda n: challenge[:n])
    assert tx(target, SELECT_SSSE)[-4:] in ("9000", "611B")
    if target.persona.behaviour.get_response:
        assert tx(target, "00C000001B").endswith("9000")
    return target


def fetch(target: SimulatedCard | SimulatedPsam, apdu: str) -> str:
    """Send, and on 61xx collect the answer with GET RESPONSE (T=0 style)."""
    answer = tx(target, apdu)
    if answer.startswith("61"):
        answer = tx(target, "00C00000" + answer[2:])
    return answer


def get_challenge(target: SimulatedCard) -> bytes:
    answer = fetch(target, "0084000008")
    assert answer.endswith("9000")
    return bytes.fromhex(answer[:-4])


def psam(name: str = "psam") -> SimulatedPsam:
    target = SimulatedPsam(load_psam(name))
    assert tx(target, SELECT_DF01) == "9000"
    return target


def psam_encrypt(target: SimulatedPsam, usage: int, algorithm: int, factors: tuple[str, ...], data: bytes) -> str:
    """Diversify then encrypt, the exchange a terminal makes; the hex answer of the last command."""
    joined = "".join(factors)
    assert tx(target, f"801A{usage:02X}{algorithm:02X}{len(joined) // 2:02X}{joined}") == "9000"
    answer = tx(target, f"80FA0000{len(data):02X}{data.hex()}")
    assert answer == f"61{len(data):02X}"
    return tx(target, f"00C00000{len(data):02X}")


# --- crypto: known answers ------------------------------------------------------------------------


def test_sm4_standard_vector() -> None:
    # GB/T 32907-2016 Appendix A, example 1: key = plaintext = 0123456789ABCDEFFEDCBA9876543210.
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    expected = "681EDF34D206965E86B3E94F536E4246"
    assert encrypt(Algorithm.SM4, key, key).hex().upper() == expected
    assert ecb(3, key, key).hex().upper() == expected  # the tests' own helper agrees


@pytest.mark.parametrize(
    ("key", "plain", "expected"),
    [
        # Two-key TDEA (keying option 2), Botan des.vec [TripleDES] first case.
        ("0123456789ABCDEFFEDCBA9876543210", "0123456789ABCDE7", "7F1D0A77826B8AFF"),
        # K1 = K2 degenerates to single DES: the FIPS 81 example "Now is t" -> 3FA40E8A984D4815.
        ("0123456789ABCDEF0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"),
    ],
)
def test_3des_published_vectors(key: str, plain: str, expected: str) -> None:
    assert encrypt(Algorithm.TDES, bytes.fromhex(key), bytes.fromhex(plain)).hex().upper() == expected
    assert ecb(1, bytes.fromhex(key), bytes.fromhex(plain)).hex().upper() == expected


def test_encrypt_refuses_what_it_cannot_do() -> None:
    key = bytes(16)
    with pytest.raises(UnsupportedAlgorithm):
        encrypt(Algorithm.SSF33, key, bytes(16))
    with pytest.raises(ValueError, match="whole 8-byte blocks"):
        encrypt(Algorithm.TDES, key, bytes(12))
    with pytest.raises(ValueError, match="16 bytes"):
        encrypt(Algorithm.SM4, bytes(8), bytes(16))
    assert algorithm_of(None) is Algorithm.TDES  # docs/card-reference.md §1: no flag means 01
    assert algorithm_of(3) is Algorithm.SM4
    with pytest.raises(UnsupportedAlgorithm):
        algorithm_of(9)
    with pytest.raises(UnsupportedAlgorithm):
        block_size(Algorithm.SSF33)


def test_pad_is_zero_padding_to_the_block() -> None:
    assert pad(R, 8) == R
    assert pad(R, 16) == R + bytes(8)
    assert pad(b"\x01\x02\x03", 8) == b"\x01\x02\x03" + bytes(5)
    assert pad(bytes(16), 16) == bytes(16)
    with pytest.raises(ValueError, match="positive"):
        pad(R, 0)


# --- crypto: diversification and factors ------------------------------------------------------


def test_3des_diversification_is_e_f_then_e_not_f() -> None:
    key = master("test", "ia", 1)
    factor = bytes.fromhex("00A3C1E52B7D9F40")
    result = diversify(Algorithm.TDES, key, factor)
    assert len(result) == 16
    assert result[:8] == ecb(1, key, factor)
    assert result[8:] == ecb(1, key, bytes.fromhex("FF5C3E1AD48260BF"))  # ~F, written out


def test_sm4_diversification_is_one_block_of_f_and_not_f() -> None:
    key = master("test", "ia", 3)
    factor = bytes.fromhex("00E8B4F01C2D3E4F")
    assert diversify(Algorithm.SM4, key, factor) == ecb(3, key, factor + bytes.fromhex("FF174B0FE3D2C1B0"))


def test_levels_chain_the_diversification() -> None:
    first, second = bytes.fromhex("1101007368000000"), bytes.fromhex("00A3C1E52B7D9F40")
    key = master("test", "rk", 1)
    assert diversify_levels(Algorithm.TDES, key, [first, second]) == div(1, div(1, key, first), second)
    assert diversify_levels(Algorithm.TDES, key, []) == key
    with pytest.raises(ValueError, match="8 bytes"):
        diversify(Algorithm.TDES, key, bytes(7))


TYPICAL_DATA = CardData(
    identification_code=bytes.fromhex("110100D15600000500A3C1E52B7D9F40"),
    card_number=b"102307185",
    atr=bytes.fromhex("3B6D000000814E43238697150100A3C1E5"),
)


@pytest.mark.parametrize(
    ("parts", "factor"),
    [
        (["region"], "1101000000000000"),
        (["region", "ascii:sh"], "1101007368000000"),
        (["idcode[8:16]"], "00A3C1E52B7D9F40"),
        (["idcode[0:3]", "idcode[12:14]"], "1101002B7D000000"),
        (["idcode"], "110100D156000005"),  # whole value, cut to 8 bytes
        (["atr_hist[0:4]"], "00814E4300000000"),
        (["atr_hist[9:13]", "hex:A5"], "00A3C1E5A5000000"),
        (["card_number"], b"10230718".hex()),
        (["ascii:sx", "ascii:sh"], b"sxsh".hex() + "00000000"),
        (["hex:0102030405060708090A"], "0102030405060708"),
        (["idcode[14:20]"], "9F40000000000000"),  # past the end: what is there, then 00s
    ],
)
def test_factor_parts(parts: list[str], factor: str) -> None:
    built = build_factor([FactorPart.parse(p) for p in parts], TYPICAL_DATA)
    assert built.hex().upper() == factor.upper()


@pytest.mark.parametrize(
    "part", ["regions", "idcode[8]", "idcode[9:8]", "ascii:", "hex:ABC", "atr", "card_number[0:4]"]
)
def test_bad_factor_parts_are_refused(part: str) -> None:
    with pytest.raises(ValueError, match="factor part"):
        FactorPart.parse(part)


def test_historical_bytes() -> None:
    assert historical_bytes(TYPICAL_DATA.atr).hex().upper() == "00814E43238697150100A3C1E5"
    # T=1: TA1, TD1, TD2, TA3, TB3 before the 13 historical bytes, TCK after them.
    v3 = bytes.fromhex("3B9D958131FE4500814E43238697150100E8B4F005")
    assert historical_bytes(v3).hex().upper() == "00814E43238697150100E8B4F0"
    assert historical_bytes(load_psam("psam").atr) == b"SSCPSAM\x01"
    with pytest.raises(ValueError, match="historical"):
        historical_bytes(bytes.fromhex("3B6D0000"))
    with pytest.raises(ValueError, match="interface"):
        historical_bytes(bytes.fromhex("3B9D95"))


# --- the key file ---------------------------------------------------------------------------------


def test_test_keys_load() -> None:
    keys = load_test_keys()
    assert set(keys.keysets) == {"test", "forged"}
    test, forged = keys.keyset("test"), keys.keyset("forged")
    for usage in KeyUsage:
        for algorithm in (Algorithm.TDES, Algorithm.SM4):
            assert len(test.master(usage, algorithm)) == 16
            assert test.master(usage, algorithm) != forged.master(usage, algorithm)
    assert test.master(KeyUsage.IA, Algorithm.TDES) == master("test", "ia", 1)
    assert KEYS["test"]["ia_3des"] not in repr(test)  # keys stay out of logs
    with pytest.raises(UnsupportedAlgorithm):
        test.master(KeyUsage.IA, Algorithm.SSF33)
    with pytest.raises(ConfigError, match="unknown test key set"):
        keys.keyset("nope")
    assert [[p.text for p in level] for level in keys.profile.levels[KeyUsage.RKSSSE]] == [
        ["region", "ascii:sh"],
        ["idcode[8:16]"],
    ]
    assert keys.profile.factors(KeyUsage.IA, TYPICAL_DATA) == [bytes.fromhex("00A3C1E52B7D9F40")]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (('ia_sm4 = "0123456789ABCDEFFEDCBA9876543210"', 'ia_sm4 = "0123"'), "ia_sm4 must be 16 bytes"),
        (('rk_sm4 = "00112233445566778899AABBCCDDEEFF"', ""), "rk_sm4 must be 16 bytes"),
        (("[keysets.forged]", "[keysets.forged]\nssf33 = 1"), "unknown keys"),
        (('ia = [["idcode[8:16]"]]', 'ia = [["idcode[8:16]", "serial"]]'), "profile.ia: unknown factor part"),
        (('ia = [["idcode[8:16]"]]', "ia = []"), "profile.ia must be"),
        (('ia = [["idcode[8:16]"]]', "ia = [[8]]"), "is not a string"),
        (("\n[profile]\n", "\n[other]\n"), "needs a \\[profile\\]"),
        (('ia_3des = "4041', 'ia 3des = "4041'), "not valid TOML"),
    ],
)
def test_bad_key_files_are_refused(tmp_path: Path, change: tuple[str, str], complaint: str) -> None:
    text = (SIM / "data" / "test-keys.toml").read_text(encoding="utf-8")
    assert change[0] in text
    path = tmp_path / "keys.toml"
    path.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=complaint):
        load_test_keys(path)


def test_key_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_test_keys(tmp_path / "missing.toml")
    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="at least one"):
        load_test_keys(tmp_path / "empty.toml")


# --- personas -----------------------------------------------------------------------------------


def test_new_personas() -> None:
    assert {"counterfeit", "v3_3des", "ssf33", "v3", "typical"} <= set(list_personas())
    counterfeit, typical = load_persona("counterfeit"), load_persona("typical")
    assert counterfeit.keyset == "forged" and typical.keyset == "test"
    assert counterfeit.spec_version == "2.00" and counterfeit.ef06 and counterfeit.ef06.name != "张三"
    assert counterfeit.ef05 and typical.ef05
    assert counterfeit.ef05.identification_code != typical.ef05.identification_code
    v3_3des = load_persona("v3_3des")
    assert v3_3des.spec_version == "3.00" and v3_3des.behaviour.algorithm == 1
    assert v3_3des.behaviour.external_auth == {0xEF06, 0xEF07, 0xEF08}
    ssf33 = load_persona("ssf33")
    assert ssf33.spec_version == "3.00" and ssf33.behaviour.algorithm == 2 and 0xEF06 in ssf33.behaviour.external_auth
    assert load_persona("v3").behaviour.algorithm == 3
    # Every card persona but these names the genuine key set.
    assert {n for n in list_personas() if load_persona(n).keyset != "test"} == {"counterfeit"}


def test_persona_with_an_unknown_keyset_is_refused(tmp_path: Path) -> None:
    text = (SIM / "personas" / "counterfeit.toml").read_text(encoding="utf-8")
    path = tmp_path / "bad.toml"
    path.write_text(text.replace('keyset = "forged"', 'keyset = "stolen"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"keys\.keyset names no key set"):
        load_persona(str(path))


# --- the card: INTERNAL AUTHENTICATE --------------------------------------------------------------


@pytest.mark.parametrize("persona", ["typical", "v3", "v3_3des"])
def test_internal_authenticate_answers_the_ia_cryptogram(persona: str) -> None:
    target = selected(persona)
    expected = ia_answer(persona)
    assert len(expected) == 16  # 16 bytes of data: two 3DES blocks or one SM4 block
    assert fetch(target, "0088000010" + R16.hex() + "00") == expected.hex().upper() + "9000"
    assert fetch(target, "0088000010" + R16.hex()) == expected.hex().upper() + "9000"  # Le may be left out
    assert target.card_key(KeyUsage.IA) == card_key(
        CARDS[persona][0], master("test", "ia", CARDS[persona][0]), CARDS[persona][1]
    )


def test_internal_authenticate_on_a_t0_card_comes_with_get_response() -> None:
    target = selected("v3_3des")
    assert tx(target, "0088000010" + R16.hex()) == "6110"
    assert tx(target, "00C0000010") == ia_answer("v3_3des").hex().upper() + "9000"


def test_the_counterfeit_answers_with_other_keys() -> None:
    answer = bytes.fromhex(fetch(selected("counterfeit"), "0088000010" + R16.hex())[:-4])
    assert len(answer) == 16
    assert answer != ia_answer("counterfeit", keyset="test")  # what a genuine card with its data says
    assert answer == ia_answer("counterfeit", keyset="forged")


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("0088000110" + R16.hex(), "6A88"),  # P2 is the IA key reference, 00 (docs/card-reference.md §2)
        ("0088010010" + R16.hex(), "6A86"),
        ("0088000008" + R.hex(), "6700"),  # the data is 16 bytes
        ("0088000004" + R.hex()[:8], "6700"),
        ("0088000010" + R16.hex() + "04", "6C10"),  # Le too short
    ],
)
def test_internal_authenticate_errors(apdu: str, sw: str) -> None:
    assert tx(selected("typical"), apdu) == sw


def test_authentication_needs_the_ssse_application() -> None:
    target = SimulatedCard(load_persona("typical"))
    assert tx(target, "0088000010" + R16.hex()) == "6A88"  # MF: the keys live in SSSE
    assert tx(target, "0082000A08" + bytes(8).hex()) == "6A88"
    bank = SimulatedCard(load_persona("not_ssc"))
    assert tx(bank, "00A4040008A000000333010101").endswith("9000")
    assert tx(bank, "0088000010" + R16.hex()) == "6A88"


def test_ssf33_card_refuses_both_authentications() -> None:
    target = selected("ssf33")
    assert tx(target, "0088000010" + R16.hex()) == "6A81"
    get_challenge(target)
    assert tx(target, "0082000A10" + bytes(16).hex()) == "6A81"
    assert tx(target, "00B2083000") == "6982"  # EF06 stays locked
    with pytest.raises(UnsupportedAlgorithm):
        target.card_key(KeyUsage.IA)


# --- the card: EXTERNAL AUTHENTICATE --------------------------------------------------------------


@pytest.mark.parametrize(("persona", "ssn"), [("v3", "540102198208080012"), ("v3_3des", "330106199212121025")])
def test_external_authenticate_opens_ef06_07_08(persona: str, ssn: str) -> None:
    target = selected(persona)
    assert fetch(target, "00B2083000") == "6982"
    challenge = get_challenge(target)
    assert challenge == CHALLENGE
    crypto = rk_cryptogram(persona, challenge)
    assert tx(target, f"0082000A{len(crypto):02X}{crypto.hex()}") == "9000"
    assert target.security.external_auth_ok
    assert fetch(target, "00B2083000") == "0812" + ssn.encode().hex().upper() + "9000"
    assert fetch(target, "00B0870008").endswith("9000")  # EF07 by SFI
    assert tx(target, "00A4020002EF08") == "9000"
    assert fetch(target, "00B0000008") == target.persona.photo[:8].hex().upper() + "9000"


def test_external_authenticate_with_a_4_byte_challenge() -> None:
    target = selected("v3")
    challenge = bytes.fromhex(tx(target, "0084000004")[:-4])
    crypto = rk_cryptogram("v3", challenge)  # E(K, challenge ‖ 12 × 00)
    assert tx(target, "0082000A10" + crypto.hex()) == "9000"


def test_a_wrong_cryptogram_answers_6300_and_keeps_the_files_shut() -> None:
    target = selected("v3")
    challenge = get_challenge(target)
    wrong = rk_cryptogram("v3", challenge, keyset="forged")
    assert tx(target, "0082000A10" + wrong.hex()) == "6300"
    assert not target.security.external_auth_ok
    assert tx(target, "00B2083000") == "6982"
    # A wrong try after a good one takes the right away again.
    challenge = get_challenge(target)
    assert tx(target, "0082000A10" + rk_cryptogram("v3", challenge).hex()) == "9000"
    get_challenge(target)
    assert tx(target, "0082000A10" + wrong.hex()) == "6300"
    assert tx(target, "00B2083000") == "6982"


def test_the_challenge_is_good_for_the_next_command_only() -> None:
    target = selected("v3")
    crypto = rk_cryptogram("v3", CHALLENGE)
    assert tx(target, "0082000A10" + crypto.hex()) == "6984"  # no challenge at all
    get_challenge(target)
    assert tx(target, "00B2072C00").endswith("9000")  # EF05 read in between
    assert tx(target, "0082000A10" + crypto.hex()) == "6984"
    get_challenge(target)
    assert tx(target, "00B2") == "6700"  # even a malformed command uses it up
    assert tx(target, "0082000A10" + crypto.hex()) == "6984"
    get_challenge(target)
    assert tx(target, "0082000A10" + crypto.hex()) == "9000"
    assert tx(target, "0082000A10" + crypto.hex()) == "6984"  # one shot: no replay
    assert target.security.external_auth_ok  # the failed replay was not a wrong cryptogram


def test_get_response_does_not_use_up_the_challenge() -> None:
    target = selected("v3_3des")
    assert tx(target, "0084000008") == "6108"
    assert tx(target, "00C0000008") == CHALLENGE.hex().upper() + "9000"
    assert tx(target, "0082000A08" + rk_cryptogram("v3_3des", CHALLENGE).hex()) == "9000"


def test_reset_and_leaving_the_application_end_external_authentication() -> None:
    target = selected("v3")

    def authenticate() -> None:
        challenge = get_challenge(target)
        assert tx(target, "0082000A10" + rk_cryptogram("v3", challenge).hex()) == "9000"

    authenticate()
    assert tx(target, SELECT_SSSE).endswith("9000")  # the same application again: still open
    assert tx(target, "00B2083000").endswith("9000")
    assert tx(target, "00A40000023F00") == "9000"  # MF: another DF
    assert not target.security.external_auth_ok
    assert tx(target, SELECT_SSSE).endswith("9000")
    assert tx(target, "00B2083000") == "6982"
    authenticate()
    target.power_on()
    assert not target.security.external_auth_ok and target.security.challenge is None
    assert tx(target, SELECT_SSSE).endswith("9000")
    assert tx(target, "00B2083000") == "6982"


@pytest.mark.parametrize(
    ("persona", "apdu", "sw"),
    [
        ("v3", "0082000A08" + bytes(8).hex(), "6700"),  # SM4: 16 bytes
        ("v3_3des", "0082000A10" + bytes(16).hex(), "6700"),  # 3DES: 8 bytes
        ("typical", "0082000A10" + bytes(16).hex(), "6700"),
        ("v3", "0082000B10" + bytes(16).hex(), "6A88"),  # P2 0A is RKSSSE
        ("v3", "0082010A10" + bytes(16).hex(), "6A86"),
        ("v3", "0082000A", "6700"),
    ],
)
def test_external_authenticate_errors(persona: str, apdu: str, sw: str) -> None:
    target = selected(persona)
    get_challenge(target)
    assert tx(target, apdu) == sw
    assert not target.security.external_auth_ok


def test_second_generation_cards_authenticate_too() -> None:
    # Nothing is locked on a 2.00 card, but its RKSSSE key works the same way.
    target = selected("typical")
    challenge = get_challenge(target)
    assert tx(target, "0082000A08" + rk_cryptogram("typical", challenge).hex()) == "9000"


# --- the PSAM -------------------------------------------------------------------------------------


def test_psam_personas() -> None:
    assert {"psam", "psam_wrong_keys", "psam_no_rk", "psam_3des_only"} <= set(list_psams())
    standard = load_psam("psam")
    assert standard.protocol == "T=0" and standard.atr[0] == 0x3B
    assert standard.keys == {KeyUsage.IA, KeyUsage.RKSSSE}
    assert standard.algorithms == {Algorithm.TDES, Algorithm.SM4}
    assert load_psam("psam_wrong_keys").keyset == "forged"
    assert load_psam("psam_no_rk").keys == {KeyUsage.IA}
    assert load_psam("psam_3des_only").algorithms == {Algorithm.TDES}
    for name in list_psams():
        assert load_psam(name).description
    with pytest.raises(ConfigError, match="unknown PSAM persona"):
        load_psam("typical")


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("algorithms = [1, 3]", "algorithms = [1, 2]"), "algorithms may list only"),
        (('keys = ["IA", "RKSSSE"]', 'keys = ["IA", "MAC"]'), "keys may list only"),
        (('keyset = "test"', 'keyset = "stolen"'), "names no key set"),
        (('protocol = "T=0"', 'protocol = "T=1"'), "T=1 is not offered"),
        (('atr = "3B6800005353435053414D01"', 'atr = "3B68"'), "has 2 bytes"),
        (("keyset", "key set"), "not valid TOML"),
    ],
)
def test_bad_psam_personas_are_refused(tmp_path: Path, change: tuple[str, str], complaint: str) -> None:
    text = (SIM / "psams" / "psam.toml").read_text(encoding="utf-8")
    assert change[0] in text
    path = tmp_path / "mine.toml"
    path.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=complaint):
        load_psam(str(path))


def test_psam_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('atr = "3B6800005353435053414D09"\nprotocol = "T=0"\n', encoding="utf-8")
    loaded = load_psam(str(path))
    assert loaded.name == "site" and loaded.source == path and loaded.keyset == "test"
    assert loaded.keys == {KeyUsage.IA, KeyUsage.RKSSSE} and loaded.algorithms == {Algorithm.TDES, Algorithm.SM4}
    with pytest.raises(ConfigError, match="not found"):
        load_psam(str(tmp_path / "none.toml"))


def test_psam_select() -> None:
    target = SimulatedPsam(load_psam("psam"))
    assert not target.selected
    assert tx(target, SELECT_DF01) == "9000"
    assert target.selected
    assert tx(target, "00A4000002DF02") == "6A82"
    assert tx(target, "00A4040005A000000003") == "6A82"
    assert tx(target, "00A4020002DF01") == "6A86"
    assert tx(target, "00A4000001DF") == "6700"
    assert target.selected  # failed SELECTs leave DF01 current
    assert tx(target, "00A40000023F00") == "9000"
    assert not target.selected


@pytest.mark.parametrize("persona", ["typical", "v3", "v3_3des"])
def test_psam_ia_cryptogram_equals_the_card_answer(persona: str) -> None:
    algorithm, factor, _ = CARDS[persona]
    answer = psam_encrypt(psam(), 0x27, algorithm, (factor,), R16)
    assert answer == ia_answer(persona).hex().upper() + "9000"
    assert fetch(selected(persona), "0088000010" + R16.hex()) == answer


@pytest.mark.parametrize(("persona", "ssn"), [("v3", "540102198208080012"), ("v3_3des", "330106199212121025")])
def test_psam_cryptogram_opens_the_card(persona: str, ssn: str) -> None:
    """The end-to-end property: card challenge -> PSAM -> EXTERNAL AUTHENTICATE -> EF06 readable."""
    algorithm, _, factors = CARDS[persona]
    card = selected(persona, challenge=bytes.fromhex("0F1E2D3C4B5A6978"))
    sam = psam()
    challenge = get_challenge(card)
    answer = psam_encrypt(sam, 0x28, algorithm, factors, pad(challenge, 8 if algorithm == 1 else 16))
    assert answer.endswith("9000")
    crypto = answer[:-4]
    assert tx(card, f"0082000A{len(crypto) // 2:02X}{crypto}") == "9000"
    assert fetch(card, "00B2083000") == "0812" + ssn.encode().hex().upper() + "9000"


def test_psam_with_wrong_keys_fails_against_genuine_cards() -> None:
    wrong = psam("psam_wrong_keys")
    algorithm, factor, factors = CARDS["v3"]
    assert psam_encrypt(wrong, 0x27, algorithm, (factor,), R16) != ia_answer("v3").hex().upper() + "9000"
    card = selected("v3")
    challenge = get_challenge(card)
    crypto = psam_encrypt(wrong, 0x28, algorithm, factors, pad(challenge, 16))[:-4]
    assert tx(card, "0082000A10" + crypto) == "6300"
    assert tx(card, "00B2083000") == "6982"


def test_psam_sees_the_counterfeit() -> None:
    algorithm, factor, _ = CARDS["counterfeit"]
    expected = psam_encrypt(psam(), 0x27, algorithm, (factor,), R16)
    assert expected.endswith("9000")
    assert fetch(selected("counterfeit"), "0088000010" + R16.hex()) != expected


def test_psam_get_response_in_pieces_and_its_errors() -> None:
    target = psam()
    assert tx(target, "00C0000008") == "6985"  # nothing pending
    assert tx(target, "801A270110" + "00A3C1E52B7D9F40" * 2) == "9000"  # two levels
    assert tx(target, "80FA000010" + bytes(16).hex()) == "6110"
    assert tx(target, "00C0000020") == "6C10"  # Le too long
    first = tx(target, "80FA000010" + bytes(16).hex())
    assert first == "6110"
    head = tx(target, "00C0000006")
    assert head.endswith("610A") and len(head) == 12 + 4
    tail = tx(target, "00C000000A")
    assert tail.endswith("9000")
    key = card_key(1, master("test", "ia", 1), "00A3C1E52B7D9F40", "00A3C1E52B7D9F40")
    assert head[:-4] + tail[:-4] == ecb(1, key, bytes(16)).hex().upper()
    assert tx(target, "00C0000008") == "6985"  # all fetched
    assert tx(target, "80FA000008" + bytes(8).hex()) == "6108"
    assert tx(target, SELECT_DF01) == "9000"  # anything else drops the pending answer ...
    assert tx(target, "00C0000008") == "6985"
    assert tx(target, "80FA000008" + bytes(8).hex()) == "6985"  # ... and SELECT the diversified key
    assert tx(target, "801A27010800A3C1E52B7D9F40") == "9000"
    assert tx(target, "80FA000008" + bytes(8).hex()) == "6108"
    one_level = card_key(1, master("test", "ia", 1), "00A3C1E52B7D9F40")
    assert tx(target, "00C0000000") == ecb(1, one_level, bytes(8)).hex().upper() + "9000"  # Le 00: all
    assert tx(target, "00C00000") == "6700"
    assert tx(target, "00C0010008") == "6A86"


@pytest.mark.parametrize(
    ("name", "apdu", "sw"),
    [
        ("psam", "80FA000008" + bytes(8).hex(), "6985"),  # encrypt without diversify
        ("psam_no_rk", "801A28010800A3C1E52B7D9F40", "6A88"),  # no RKSSSE key
        ("psam_no_rk", "801A27010800A3C1E52B7D9F40", "9000"),  # IA is there
        ("psam", "801A29010800A3C1E52B7D9F40", "6A88"),  # no such key usage
        ("psam_3des_only", "801A27031000E8B4F01C2D3E4F" + bytes(8).hex(), "6A81"),  # no SM4
        ("psam_3des_only", "801A27010800A3C1E52B7D9F40", "9000"),
        ("psam", "801A27020800A3C1E52B7D9F40", "6A81"),  # SSF33: nobody has it
        ("psam", "801A27050800A3C1E52B7D9F40", "6A81"),
        ("psam", "801A27010700A3C1E52B7D9F", "6700"),  # factors are 8 bytes each
        ("psam", "801A270120" + bytes(32).hex(), "6700"),  # at most three levels
        ("psam", "80CA000000", "6D00"),  # unknown INS
        ("psam", "0088000010" + "11" * 16, "6D00"),
        ("psam", "A0A4000002DF01", "6E00"),  # unknown CLA
        ("psam", "841A27010800A3C1E52B7D9F40", "6E00"),
        ("psam", "001A27010800A3C1E52B7D9F40", "6E00"),  # diversify is a proprietary (80) command
        ("psam", "80A4000002DF01", "6E00"),  # SELECT is ISO (00)
        ("psam", "801A2701", "6700"),
        ("psam", "80FA", "6700"),  # shorter than a header
    ],
)
def test_psam_status_words(name: str, apdu: str, sw: str) -> None:
    assert tx(psam(name), apdu) == sw


def test_psam_encrypt_errors() -> None:
    target = psam()
    assert tx(target, "801A27010800A3C1E52B7D9F40") == "9000"
    assert tx(target, "80FA00000C" + bytes(12).hex()) == "6700"  # not whole 3DES blocks
    assert tx(target, "80FA010008" + bytes(8).hex()) == "6A86"
    assert tx(target, "80FA0000") == "6700"
    assert target.diversified  # errors in encrypt keep the key
    assert tx(target, "801A27030800E8B4F01C2D3E4F") == "9000"
    assert tx(target, "80FA000008" + bytes(8).hex()) == "6700"  # SM4 blocks are 16 bytes
    assert tx(target, "801A28020800A3C1E52B7D9F40") == "6A81"
    assert not target.diversified  # a refused diversify drops the old key


def test_psam_needs_df01_and_forgets_at_reset() -> None:
    target = SimulatedPsam(load_psam("psam"))
    assert tx(target, "801A27010800A3C1E52B7D9F40") == "6985"  # DF01 not selected
    assert tx(target, SELECT_DF01) == "9000"
    assert tx(target, "801A27010800A3C1E52B7D9F40") == "9000"
    assert target.diversified
    target.power_on()
    assert not target.selected and not target.diversified
    assert tx(target, "80FA000008" + bytes(8).hex()) == "6985"
    assert target.apdu_count == 4 and target.command_log[0] == bytes.fromhex("801A2701")


def test_psam_can_be_pulled() -> None:
    from sscard.sim import CardGone

    target = SimulatedPsam(load_psam("psam"), remove_after=1)
    assert tx(target, SELECT_DF01) == "9000"
    assert not target.present
    with pytest.raises(CardGone):
        tx(target, SELECT_DF01)


def test_psam_behind_the_in_process_reader() -> None:
    reader = SimReader(SimulatedPsam(load_psam("psam")), "SAM slot")
    transport = reader.connect()
    assert transport.atr == load_psam("psam").atr
    assert transport.transmit(bytes.fromhex(SELECT_DF01)) == b"\x90\x00"


# --- the PSAM through the vpcd link (against an in-test fake of vpcd's socket, no pcscd) -----------


@pytest.fixture
def vpcd_socket() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    yield server
    server.close()


def frame(conn: socket.socket, payload: bytes) -> bytes | None:
    conn.sendall(len(payload).to_bytes(2, "big") + payload)
    if len(payload) == 1 and payload != b"\x04":
        return None  # power off/on and reset are not answered
    data = b""
    while len(data) < 2:
        data += conn.recv(2 - len(data))
    size = int.from_bytes(data, "big")
    body = b""
    while len(body) < size:
        body += conn.recv(size - len(body))
    return body


def test_psam_in_a_vpcd_slot(vpcd_socket: socket.socket) -> None:
    port = vpcd_socket.getsockname()[1]
    assert VpcdLink.port_for_slot(1) == 35964  # where a kiosk's SAM slot goes
    sam = SimulatedPsam(load_psam("psam"))
    with VpcdLink(sam, port=port) as link:
        conn, _ = vpcd_socket.accept()
        conn.settimeout(5)
        with conn:
            assert frame(conn, b"\x01") is None
            assert frame(conn, b"\x04") == sam.atr
            assert frame(conn, bytes.fromhex(SELECT_DF01)) == b"\x90\x00"
            assert frame(conn, bytes.fromhex("801A27010800A3C1E52B7D9F40")) == b"\x90\x00"
            assert frame(conn, bytes.fromhex("80FA000010" + R16.hex())) == b"\x61\x10"
            answer = frame(conn, bytes.fromhex("00C0000010"))
            assert answer == ia_answer("typical") + b"\x90\x00"
        assert link.card is sam and link.apdu_count == 4
