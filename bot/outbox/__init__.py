"""One durable, rate-paced way out to Telegram: `Outbox.enqueue` and one `Sender` per process.

Enqueue writes a row first (in the caller's transaction or its own), then wakes the local
sender. The sender claims due rows with a lease (several processes can share the table),
paces them under Telegram's flood limits and records each outcome:

* pacing: `global_per_second` sends overall (default 30) and at least `1 / per_chat_per_second`
  seconds between sends to one chat (default 1/s), for the bot token as a whole: the budget
  is shared through the database by every process (`budget`), so two processes together
  stay under it and one alone may use all of it; a chat's rows go out in order (the claim
  only takes a chat's oldest unsent row);
* 429: the row goes back to pending until `retry_after` (the try is not counted) and that chat
  is held as long; when several chats are told to wait within a second, all sending pauses;
* 5xx, timeouts, network errors: retried with exponential backoff up to `max_attempts`;
* 400 / 403 / 404 (chat not found, bot blocked, bad request): failed at once, not retried;
* restart: rows left `sending` whose lease expired are claimed again and resent (failed as
  "outcome unknown" if `retry_ambiguous=False`); rows still pending are simply sent.

Delivery is at least once. A send whose answer never came (timeout, connection reset after the
request went out, a crash between sending and recording) may have reached the chat; Telegram
has no idempotency key for sendMessage, so resending can duplicate. To keep that window small
the outcome is recorded right after each call, connection failures that provably happened
before the request was sent (connect refused/DNS) are retried freely, and callers that prefer
"at most once" (e.g. a one-time secret) enqueue with `retry_ambiguous=False`: such a row is
marked failed ("outcome unknown") instead of being resent. `dedupe_key` makes enqueueing
idempotent (the same logical message is never queued twice).

Files by reference (uploads): a row never holds bytes. A row that sends a file the bot keeps
elsewhere (a vault item) carries a `FileRef` in its params (`params["_upload"]`: the name of
an `UploadSource`, the method's file field, a key naming the file, an opaque JSON ref); a
file_id known at enqueue sits in the file field as usual and is tried first. At send time a
row whose file field is empty asks its source, which answers with a Telegram file_id
(uploaded before, perhaps by an earlier row) or a stream of the bytes; the bytes are uploaded
in that same call, so an upload is paced, 429-held, retried and recovered after a restart like
any send. The file_id Telegram gives the upload goes back to the source
(`UploadSource.uploaded`) so later rows send by file_id, and rows for a file this process is
uploading wait for it instead of uploading it again. A file_id Telegram refuses (400) is
dropped from the row and the bytes are uploaded instead, once. Bytes the source cannot give
(`SourceUnavailable`: missing, unreadable) fail the row at once, with cause `source`. A timeout
while the body was still streaming provably sent nothing, so it is retried even for
`retry_ambiguous=False` rows. Uploads get `upload_timeout_seconds` and keep their lease alive.

Failures reach the row's hook too: `add_hook(name, on_sent, on_failed=...)` receives a
`FailedMessage` with a `cause` (`source`, `unreachable`, `rejected`, `gave_up`, `unknown`) and
the session of the transaction that marks the row failed, so a notice it queues (to tell the
person what happened) is committed with the failure or not at all.

Modules: `queue` (enqueue), `sender` (claim, send, record), `budget` (the shared pace),
`pacer` (this process's window and 429 holds), `uploads` (files by reference), `hooks`
(what on_sent / on_failed receive). The names below are the public API.
"""

from __future__ import annotations

from bot.outbox.budget import SharedBudget
from bot.outbox.hooks import FailCause, FailedMessage, OnFailed, OnSent, SentMessage
from bot.outbox.pacer import Pacer
from bot.outbox.queue import Outbox, wait_idle
from bot.outbox.sender import Sender
from bot.outbox.uploads import UPLOAD_PARAM, FileRef, SourceUnavailable, UploadSource
from core.settings import OutboxSettings

__all__ = [
    "UPLOAD_PARAM",
    "FailCause",
    "FailedMessage",
    "FileRef",
    "OnFailed",
    "OnSent",
    "Outbox",
    "OutboxSettings",
    "Pacer",
    "Sender",
    "SentMessage",
    "SharedBudget",
    "SourceUnavailable",
    "UploadSource",
    "wait_idle",
]
