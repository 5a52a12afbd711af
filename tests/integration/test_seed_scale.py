"""`flask seed-scale` fills the database with a tenant the page benchmarks measure."""

from sqlalchemy import func, select

from kmeweb.devices.models import Device, DeviceSync
from kmeweb.directory.models import EndUser
from kmeweb.identifiers import is_valid_imei
from kmeweb.integration.models import Upload
from kmeweb.profiles.models import Profile


def test_seed_scale_creates_uploads_devices_profiles_and_users(runner, session):
    result = runner.invoke(
        args=["seed-scale", "--uploads", "8", "--devices", "203", "--profiles", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "8 uploads, 203 devices" in result.output

    uploads = session.scalars(select(Upload).order_by(Upload.id)).all()
    assert len(uploads) == 8
    assert sum(u.device_count for u in uploads) == 203
    assert {u.status for u in uploads} == {"pending", "partial", "approved"}
    for upload in uploads:
        pending = session.scalar(
            select(func.count()).where(Device.upload_id == upload.id, Device.approval == "pending")
        )
        expected = {"pending": upload.device_count, "approved": 0}.get(
            upload.status, upload.device_count - upload.device_count // 2
        )
        assert pending == expected, upload.status

    # Approved devices sit in profiles (the Default Profile among them); pending ones in none.
    assert (
        session.scalar(
            select(func.count()).where(Device.approval == "approved", Device.profile_id.is_(None))
        )
        == 0
    )
    assert (
        session.scalar(
            select(func.count()).where(Device.approval == "pending", Device.profile_id.is_not(None))
        )
        == 0
    )
    kinds = dict(
        session.execute(
            select(Profile.kind, func.count(Device.id))
            .join(Device, Device.profile_id == Profile.id)
            .group_by(Profile.kind)
        ).all()
    )
    assert kinds.keys() == {"kme", "kme_default"}
    assert (
        session.scalar(select(func.count()).select_from(Profile).where(Profile.kind == "kme")) == 5
    )
    assert session.scalar(select(func.count()).select_from(EndUser)) >= 5
    assert session.scalar(select(func.count()).where(Device.end_user_id.is_not(None))) > 0
    assert all(is_valid_imei(imei) for imei in session.scalars(select(Device.imei)))
    # As after a pull: each device synced, with what KME held of it.
    seen = session.execute(
        select(Device.approval, Device.profile_id, DeviceSync).join(
            DeviceSync, DeviceSync.device_id == Device.id
        )
    ).all()
    assert len(seen) == 203
    for approval, profile_id, sync in seen:
        assert (sync.sync_state, sync.kme_seen_approval, sync.kme_seen_profile_id) == (
            "synced",
            approval,
            profile_id,
        )
        assert sync.kme_seen_at is not None and sync.kme_seen_at.tzinfo is not None

    # A second run adds its own rows beside the first.
    again = runner.invoke(
        args=["seed-scale", "--uploads", "2", "--devices", "10", "--profiles", "1"]
    )
    assert again.exit_code == 0, again.output
    assert session.scalar(select(func.count()).select_from(Device)) == 213
