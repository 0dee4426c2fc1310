"""/backup and /backup now through the fake Telegram server, against the real app and engine."""

from __future__ import annotations

from sqlalchemy import func, select

from core.backup import BACKUP_KIND, last_backup
from storage.models import Job
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness


async def backup_jobs(app: Harness) -> int:
    async with app.app.sessionmaker() as session:
        return await session.scalar(
            select(func.count()).select_from(Job).where(Job.kind == BACKUP_KIND)
        )


async def test_owner_backs_up_now_and_sees_the_checked_copy(app: Harness) -> None:
    empty = await app.say(OWNER, "/backup", "Backups")
    assert "No backup yet" in empty["text"] and "keep 7" in empty["text"]
    await app.say(OWNER, "/tz Europe/Berlin")

    queued = await app.say(OWNER, "/backup now", "Backup queued")
    job_id = int(queued["text"].split("job #")[1].split(".")[0])
    job = await app.wait_job(job_id, "succeeded", "dead")
    assert job.status == "succeeded", job.last_error

    record = await last_backup(app.app.sessionmaker)
    assert record is not None and record.ok and record.job_id == job_id
    backup_dir = app.app.settings.data_dir / "backups"
    assert (backup_dir / record.file_name).exists()

    shown = await app.say(OWNER, "/backup", record.file_name)
    text = shown["text"]
    assert "✅" in text and "integrity ok" in text
    assert "CET" in text  # the owner's timezone, not UTC
    assert f"{sum(record.row_counts.values())} rows" in text
    assert "Kept files" in text and text.count(record.file_name) == 2  # last run + kept list


async def test_operators_and_viewers_cannot_back_up(app: Harness) -> None:
    refused = await app.say(OPERATOR, "/backup now")
    assert "cannot start a backup" in refused["text"]
    seen = await app.say(VIEWER, "/backup")
    assert "cannot see backups" in seen["text"]
    assert await backup_jobs(app) == 0


async def test_backup_usage(app: Harness) -> None:
    reply = await app.say(OWNER, "/backup sideways")
    assert "Usage: /backup" in reply["text"]


async def test_a_workspace_owner_cannot_back_up_or_see_backups(app: Harness) -> None:
    other = 4001
    await app.say(OWNER, f"/tenants add other {other}", "created")
    app.users[other] = app.tg.user(other, "Otto")
    for command, what in (("/backup now", "start a backup"), ("/backup", "see backups")):
        text = (await app.say(other, command))["text"]
        assert f"Only the deployment's owners (OPSDECK_OWNER_IDS) can {what}" in text
        assert "Kept files" not in text and "backups" not in text.replace("see backups", "")
        assert "restore" not in text
    assert await backup_jobs(app) == 0


async def test_retry_all_on_two_dead_backups_both_succeed(app: Harness) -> None:
    """Issue 11 item 6: two backups retried together run one after the other, each its own
    file (they used to share a name by the second and delete each other's copy)."""
    backup_dir = app.app.settings.data_dir / "backups"
    backup_dir.parent.mkdir(parents=True, exist_ok=True)
    backup_dir.write_text("not a directory")  # both runs die: the directory cannot be made
    ids = []
    for _ in range(2):
        queued = await app.say(OWNER, "/backup now", "Backup queued")
        ids.append(int(queued["text"].split("job #")[1].split(".")[0]))
    for job_id in ids:
        assert (await app.wait_job(job_id, "succeeded", "dead")).status == "dead"
    backup_dir.unlink()
    listing = await app.say(OWNER, "/jobs failed", "Jobs")
    await app.press(OWNER, listing, app.button(listing, "Retry all (2)"))
    confirm = await app.becomes(listing, lambda m: "?" in m["text"])
    yes = await app.press(OWNER, confirm, app.button(confirm, "Yes, retry 2"))
    assert yes["text"] == "Retried 2 job(s)."
    for job_id in ids:
        job = await app.wait_job(job_id, "succeeded", "dead", "failed")
        assert job.status == "succeeded", job.last_error
    files = sorted(p.name for p in backup_dir.glob("opsdeck-*.db"))
    assert len(files) == 2
    assert not list(backup_dir.glob("*.partial"))
