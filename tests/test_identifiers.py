import pytest

from kmeweb.identifiers import (
    classify_id,
    is_meid,
    is_valid_imei,
    is_valid_serial,
    luhn_check_digit,
    normalize_serial,
)


@pytest.mark.parametrize("imei", ["490154203237518", "353227410022505", "351801420130888"])
def test_luhn_check_digit_matches_known_imeis(imei):
    assert luhn_check_digit(imei[:14]) == int(imei[14])
    assert is_valid_imei(imei)


@pytest.mark.parametrize(
    "value", ["490154203237519", "35322741002250", "3532274100225055", "35322741002250a", ""]
)
def test_invalid_imeis(value):
    assert not is_valid_imei(value)


def test_luhn_rejects_non_digits():
    with pytest.raises(ValueError):
        luhn_check_digit("12a4")


def test_meid_needs_14_hex_starting_at_a0():
    assert is_meid("A0000012345678")
    assert is_meid("ff000012345678")
    assert not is_meid("9F000012345678")
    assert not is_meid("A000001234567")


def test_serial_normalized_and_loosely_validated():
    assert normalize_serial("  r58m315cl4t ") == "R58M315CL4T"
    assert is_valid_serial(" rakm2svy64a")
    assert not is_valid_serial("R58-M315")
    assert not is_valid_serial("R58M3")


@pytest.mark.parametrize(
    ("value", "kind", "normalized"),
    [
        ("353227410022505", "imei", "353227410022505"),
        ("353227410022504", "invalid", "353227410022504"),
        ("a0000012345678", "meid", "A0000012345678"),
        (" r58m315cl4t", "serial", "R58M315CL4T"),
        ("RFAW70M3G3A", "serial", "RFAW70M3G3A"),
        ("bad id!", "invalid", "bad id!"),
        ("", "invalid", ""),
    ],
)
def test_classify_id(value, kind, normalized):
    result = classify_id(value)
    assert (result.kind, result.value) == (kind, normalized)
    assert (result.reason is None) == (kind != "invalid")
