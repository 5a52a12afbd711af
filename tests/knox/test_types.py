from datetime import UTC, datetime

from kmeweb.knox import bodies
from kmeweb.knox.types import Device, Profile, parse_time


def test_parse_time_accepts_epoch_ms_seconds_and_iso():
    expected = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert parse_time(1700000000000) == expected
    assert parse_time("1700000000000") == expected
    assert parse_time(1700000000) == expected
    assert parse_time("2023-11-14T22:13:20Z") == expected
    assert parse_time("2023-11-14T22:13:20") == expected
    assert parse_time(None) is None
    assert parse_time("not a time") is None


def test_device_parsing_accepts_name_variants_and_ignores_unknown_fields():
    d = Device.from_api(
        {
            "id": "abc",
            "meidImei": "353227410022505",
            "serial": "R58M315CL4T",
            "modelName": "SM-G991B",
            "tags": "a, b",
            "orderNo": "PO-1",
            "updatedTime": "2024-01-01T00:00:00Z",
            "somethingNew": {"x": 1},
        }
    )
    assert d.mei == d.imei == "353227410022505"
    assert d.serial == "R58M315CL4T"
    assert d.model == "SM-G991B"
    assert d.tags == ["a", "b"]
    assert d.order_id == "PO-1"
    assert d.update_time == datetime(2024, 1, 1, tzinfo=UTC)


def test_profile_round_trip_through_body_builder():
    p = Profile(
        name="P", do_enabled=True, skip_setup_wizard=True, supported_mdm="m", extra={"x": 1}
    )
    body = bodies.build_profile_body(p)
    assert body == {
        "name": "P",
        "doEnabled": True,
        "skipSetupWizard": True,
        "supportedMDM": "m",
        "x": 1,
    }
    back = Profile.from_api({**body, "id": "42", "updateTime": 1700000000000})
    assert (back.id, back.name, back.do_enabled, back.supported_mdm) == ("42", "P", True, "m")


def test_batch_response_lists_and_unreported_ids():
    result = bodies.parse_batch_response(
        {
            "successDeviceList": ["a"],
            "notFoundDeviceList": ["b"],
            "invalidDeviceList": ["c"],
            "failedDeviceList": [
                {"deviceId": "d", "code": 5000006, "message": "RSA_DECRYPTION_FAIL"}
            ],
        },
        ["a", "b", "c", "d", "e"],
    )
    assert result.succeeded == ["a"]
    assert result.not_found == ["b"]
    assert result.invalid == ["c"]
    assert result.failed == ["d", "e"]
    assert result.outcomes["d"].code == 5000006
    assert result.reason("e") == "not reported by Knox"


def test_batch_response_without_lists_means_all_succeeded():
    result = bodies.parse_batch_response({}, ["a", "b"])
    assert result.ok and result.succeeded == ["a", "b"]
