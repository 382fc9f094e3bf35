"""sw_api.origins: one normalisation of http(s) origins (pure, no I/O)."""

from __future__ import annotations

import pytest

from sw_api.origins import Origin, origin_of


@pytest.mark.parametrize("url", [
    "https://files.slack.com/x", "https://FILES.Slack.COM/x", "https://files.slack.com./x",
    "https://files.slack.com:443/x", "HTTPS://files.slack.com.:443/x", "https://user:secret@files.slack.com/x",
])
def test_same_origin(url: str) -> None:
    assert origin_of(url) == Origin("https", "files.slack.com", 443)


def test_default_ports_filled_and_others_kept() -> None:
    assert origin_of("http://example.com/") == Origin("http", "example.com", 80)
    assert origin_of("http://example.com:8080/") == Origin("http", "example.com", 8080)
    assert origin_of("https://example.com:80/") == Origin("https", "example.com", 80)
    assert origin_of("https://example.com:0/") == Origin("https", "example.com", 0)


def test_ipv6_literals() -> None:
    assert origin_of("http://[::1]:8080/a") == Origin("http", "::1", 8080)
    assert origin_of("http://[0:0::1]:8080/a") == origin_of("http://[::1]:8080/b")
    assert origin_of("https://[2001:DB8::1]/") == Origin("https", "2001:db8::1", 443)


@pytest.mark.parametrize("url", [
    "ftp://example.com/", "/relative", "", "https://./", "https:///path", "http://[bad/", "http://a.com\\@b.com/",
    "https://example.com:99999/",
])
def test_no_origin(url: str) -> None:
    assert origin_of(url) is None


def test_https_allow_list_entry() -> None:
    assert Origin.https("Files.Slack.com.") == Origin("https", "files.slack.com", 443)
    with pytest.raises(ValueError):
        Origin.https("")


def test_slack_files_trust_the_normalised_slack_hosts_only() -> None:
    from bridge.media import MediaLimits
    from handlers.slack_files import SlackFiles

    files = SlackFiles(token="xoxb-test", api_url="http://127.0.0.1:8123/api/", limits=MediaLimits())
    for url in ("https://files.slack.com/f", "https://files.slack.com./f", "https://FILES.slack.com:443/f",
                "http://127.0.0.1:8123/files/f"):
        assert files.trusted(url), url
    for url in ("http://files.slack.com/f", "https://files.slack.com:8443/f", "https://files.slack.com.evil.com/f",
                "http://127.0.0.1:8124/f", "ftp://files.slack.com/f"):
        assert not files.trusted(url), url
