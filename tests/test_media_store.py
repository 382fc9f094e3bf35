"""Outbound MMS (issue 11), the stored and pure parts: pictures in the store on both engines (put, get, expiry,
prune), a thread reply's file ids surviving the store, the MMS checks by content, and how pictures are shown."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from bridge.compose import validate_all
from bridge.config import Config, ConfigError
from bridge.media import (
    MediaLimits,
    MediaRefused,
    MediaShelf,
    check_count,
    check_picture,
    human_bytes,
    is_published,
    new_token,
    safe_name,
    sniff,
)
from bridge.model import MediaItem, SlackReply
from bridge.ports import utcnow
from bridge.recovery import Recovery, Retention
from bridge.render import parent_blocks, picture_blocks
from bridge.storage.port import Store
from tests.test_render import sms as make_sms

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20


def item(token: str, *, age_days: float = 0, days: float = 7, data: bytes = PNG) -> MediaItem:
    created = utcnow() - timedelta(days=age_days)
    return MediaItem(token, "photo.png", "image/png", data, created, created + timedelta(days=days))


async def test_a_picture_is_served_until_it_expires(store: Store) -> None:
    token = new_token()
    await store.media_put(item(token))
    got = await store.media_get(token, utcnow())
    assert got is not None and (got.data, got.content_type, got.name) == (PNG, "image/png", "photo.png")
    assert await store.media_get(token, utcnow() + timedelta(days=8)) is None
    assert await store.media_get(new_token(), utcnow()) is None


async def test_bytes_survive_exactly(store: Store) -> None:
    data = bytes(range(256)) * 4096  # every byte value, 1 MB
    token = new_token()
    await store.media_put(item(token, data=data))
    got = await store.media_get(token, utcnow())
    assert got is not None and got.data == data


async def test_prune_removes_only_expired_pictures(store: Store) -> None:
    old, fresh = new_token(), new_token()
    await store.media_put(item(old, age_days=8))
    await store.media_put(item(fresh))
    assert await store.prune_media(utcnow(), 100) == 1
    assert await store.media_get(fresh, utcnow()) is not None
    assert (await store.row_counts())["media"] == 1
    assert await store.prune_media(utcnow(), 100) == 0


async def test_the_retention_sweeper_prunes_expired_pictures(store: Store) -> None:
    from bridge.service import Bridge, CallbackTokens

    class _Nothing:  # the sweeper's prune round never calls SignalWire or Slack
        pass

    await store.media_put(item(new_token(), age_days=10))
    kept = new_token()
    await store.media_put(item(kept))
    bridge = Bridge(store=store, signalwire=_Nothing(), slack=_Nothing(),  # type: ignore[arg-type]
                    tokens=CallbackTokens(b"k" * 32, "http://127.0.0.1"))
    await Recovery(bridge, _Nothing(), Retention(days=0, audit_days=0)).prune(utcnow())  # type: ignore[arg-type]
    assert (await store.row_counts())["media"] == 1
    assert await store.media_get(kept, utcnow()) is not None


async def test_a_reply_keeps_its_file_ids(store: Store) -> None:
    now = utcnow()
    reply = SlackReply("C0INBOUND", "1.000001", "1.000002", "U0ALICE", "look", subtype="file_share",
                       files=("F000000001", "F000000002"))
    assert await store.record_reply(reply, now, now - timedelta(seconds=1))
    [again] = await store.replies_to_resume(now)
    assert again.files == ("F000000001", "F000000002")
    claimed = await store.claim_reply("C0INBOUND", "1.000002", now, now + timedelta(seconds=30))
    assert claimed is not None and claimed.files == reply.files


async def test_shelf_publishes_unguessable_urls(store: Store) -> None:
    shelf = MediaShelf(store, "https://sms.example.com", days=7)
    pictures = [check_picture("a b.png", PNG, MediaLimits()), check_picture("x.gif", GIF, MediaLimits())]
    urls = await shelf.publish(pictures, utcnow())
    assert len(urls) == 2 and len(set(urls)) == 2
    for url, picture in zip(urls, pictures, strict=True):
        assert url.startswith("https://sms.example.com/media/") and url.endswith("/" + picture.name)
        assert is_published(url)
        token = url.split("/")[-2]
        got = await store.media_get(token, utcnow())
        assert got is not None and got.data == picture.data
        assert got.expires_at - got.created_at == timedelta(days=7)


def test_type_is_judged_by_content() -> None:
    assert (sniff(PNG), sniff(GIF), sniff(JPEG)) == ("image/png", "image/gif", "image/jpeg")
    assert sniff(b"hello, I am text") is None
    with pytest.raises(MediaRefused, match="not a JPEG, PNG or GIF"):
        check_picture("notes.png", b"just text pretending", MediaLimits())
    # The name says png, the bytes say jpeg: the bytes win, and the name follows them.
    assert check_picture("photo.png", JPEG, MediaLimits()).content_type == "image/jpeg"
    assert check_picture("photo.png", JPEG, MediaLimits()).name == "photo.jpg"


def test_limits_name_the_limit() -> None:
    with pytest.raises(MediaRefused, match=r"at most 1 MB \(MMS_MAX_BYTES\)"):
        check_picture("big.png", PNG + b"\x00" * (2 * 1024 * 1024), MediaLimits())
    check_picture("edge.png", PNG + b"\x00" * (1024 * 1024 - len(PNG)), MediaLimits())  # exactly 1 MB is fine
    with pytest.raises(MediaRefused, match="at most 8 pictures"):
        check_count(9, MediaLimits())
    check_count(8, MediaLimits())
    assert (human_bytes(1024 * 1024), human_bytes(1536), human_bytes(10)) == ("1 MB", "1.5 KB", "10 bytes")


def test_safe_names() -> None:
    assert safe_name("Holiday photo!.PNG", "image/png") == "Holiday-photo.png"
    assert safe_name("../../etc/passwd.png", "image/gif") == "etc-passwd.gif"
    assert safe_name("../..", "image/gif") == "picture.gif"
    assert safe_name("", "image/jpeg") == "picture.jpg"
    assert len(new_token()) == 32 and new_token() != new_token()


def test_only_our_pictures_are_shown_inline() -> None:
    ours = f"https://sms.example.com/media/{new_token()}/photo.png"
    blocks = picture_blocks([ours, "https://example.com/a.jpg", "https://example.com/media/short/x.png"])
    assert blocks == [{"type": "image", "image_url": ours, "alt_text": "Picture sent: photo.png"}]
    parent = parent_blocks(make_sms(media=(ours,)))
    assert {"type": "image", "image_url": ours, "alt_text": "Picture sent: photo.png"} in parent


def test_compose_counts_files_with_urls() -> None:
    base = dict(to="+15551234567", from_=None, from_numbers=("+15557770000",), default_region="US")
    assert validate_all(body="", files=1, **base) == {}  # type: ignore[arg-type]
    assert "body" in validate_all(body="", **base)  # type: ignore[arg-type]
    errors = validate_all(body="", files=5, media_text="\n".join(f"https://e.com/{i}.png" for i in range(4)),
                          **base)  # type: ignore[arg-type]
    assert "at most 8 pictures" in errors["files"]


def test_config_defaults_and_bad_values() -> None:
    from tests.test_config import env

    config = Config.from_env(env())
    assert (config.mms_max_bytes, config.media_retention_days) == (1024 * 1024, 7)
    config = Config.from_env(env(MMS_MAX_BYTES="600000", MEDIA_RETENTION_DAYS="1"))
    assert (config.mms_max_bytes, config.media_retention_days) == (600000, 1)
    for name, value in (("MMS_MAX_BYTES", "1MB"), ("MMS_MAX_BYTES", "10"), ("MEDIA_RETENTION_DAYS", "0"),
                        ("MEDIA_RETENTION_DAYS", "-3")):
        with pytest.raises(ConfigError, match=name):
            Config.from_env(env(**{name: value}))
