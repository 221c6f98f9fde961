"""The example requests of WuKongIM's documentation, sent verbatim to a server started the way
those pages assume: no manager token (they send none). TMP_PAGE_* is from WuKongIM's page on
/tmpchannel/subscriber_set; WL_PAGE_* and WL_PAGE2_* from its two pages on /channel/whitelist_set
(group123), whose status table lists 404 for a missing channel."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.helpers import (
    CURL_FORM_CT,
    JSON_CT,
    assert_error,
    assert_ok,
    check,
    get_list,
    post_raw,
    serving,
    subscribers,
)

# WuKongIM's documentation of /tmpchannel/subscriber_set, the cURL example: the -d argument
# exactly as written
TMP_PAGE_CURL = """{
      "channel_id": "tmp_channel_123",
      "uids": ["user1", "user2", "user3"]
    }"""
# WuKongIM's documentation of /channel/whitelist_set, "设置白名单" (both versions of the page)
WL_PAGE_SET = """{
      "channel_id": "group123",
      "channel_type": 2,
      "uids": ["user1", "user2", "user3"]
    }"""
WL_PAGE2_SET = """{
    "channel_id": "group123",
    "channel_type": 2,
    "uids": ["user1", "user2", "user3"]
  }"""
# WuKongIM's documentation of /channel/whitelist_set, "清空白名单"
WL_PAGE_CLEAR = """{
      "channel_id": "group123",
      "channel_type": 2,
      "uids": []
    }"""
# the usage section of that page: `curl -X POST "/channel/whitelist_set" -d '...'` with no -H,
# so curl sends Content-Type: application/x-www-form-urlencoded
WL_PAGE_BATCH = """{
  "channel_id": "group123",
  "channel_type": 2,
  "uids": ["admin1", "admin2", "moderator1"]
}"""
WL_PAGE_CLEAR_FORM = """{
  "channel_id": "group123",
  "channel_type": 2,
  "uids": []
}"""
WL_PAGE_RESET = """{
  "channel_id": "group123",
  "channel_type": 2,
  "uids": ["new_privileged_user"]
}"""


@pytest.fixture(scope="module")
def open_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A fresh server without a manager token, as in WuKongIM's examples."""
    with serving(tmp_path_factory.mktemp("wukongim-examples") / "data", token=None) as (_, c):
        yield c


@pytest.fixture
def fresh_group123(open_client: httpx.Client) -> httpx.Client:
    """group123 does not exist (tests of this module share one server)."""
    assert_ok(open_client.post("/channel/delete", json={"channel_id": "group123",
                                                         "channel_type": 2}))
    return open_client


def test_tmpchannel_page_curl_example(open_client: httpx.Client) -> None:
    r = post_raw(open_client, "/tmpchannel/subscriber_set", TMP_PAGE_CURL, JSON_CT)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert subscribers(open_client, "tmp_channel_123", 8) == ["user1", "user2", "user3"]


def test_tmpchannel_page_python_and_go_examples(open_client: httpx.Client) -> None:
    # requests.post(url, json=data) and Go's json.Marshal: compact JSON, application/json
    data = {"channel_id": "tmp_channel_123", "uids": ["user1", "user2", "user3"]}
    r = open_client.post("/tmpchannel/subscriber_set", json=data)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert [check(open_client, u, "tmp_channel_123", 8) for u in ("user1", "user4")] == [1, 3]


@pytest.mark.parametrize("example", [WL_PAGE_SET, WL_PAGE2_SET], ids=["page1", "page2"])
def test_whitelist_pages_set_on_missing_group_is_404_then_200(fresh_group123: httpx.Client,
                                                              example: str) -> None:
    c = fresh_group123
    assert_error(post_raw(c, "/channel/whitelist_set", example, JSON_CT), 404,
                 "channel_not_found")
    assert_ok(c.post("/channel", json={"channel_id": "group123", "channel_type": 2,
                                       "subscribers": ["user1", "user4"]}))
    r = post_raw(c, "/channel/whitelist_set", example, JSON_CT)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert get_list(c, "whitelist", "group123", 2) == ["user1", "user2", "user3"]
    # "when enabled only whitelisted users may send"
    assert [check(c, u, "group123", 2) for u in ("user1", "user4")] == [1, 13]


def test_whitelist_page_clear_turns_whitelist_mode_off(fresh_group123: httpx.Client) -> None:
    c = fresh_group123
    assert_ok(c.post("/channel", json={"channel_id": "group123", "channel_type": 2,
                                       "subscribers": ["user1", "user4"]}))
    assert_ok(post_raw(c, "/channel/whitelist_set", WL_PAGE_SET, JSON_CT))
    assert check(c, "user4", "group123", 2) == 13
    r = post_raw(c, "/channel/whitelist_set", WL_PAGE_CLEAR, JSON_CT)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert get_list(c, "whitelist", "group123", 2) == []
    # "clearing ... restores normal permissions for all users, disables whitelist mode"
    assert [check(c, u, "group123", 2) for u in ("user1", "user4")] == [1, 1]


def test_whitelist_page_usage_examples_with_curls_default_content_type(
        fresh_group123: httpx.Client) -> None:
    c = fresh_group123
    assert_error(post_raw(c, "/channel/whitelist_set", WL_PAGE_BATCH, CURL_FORM_CT), 404)
    assert_ok(c.post("/channel", json={"channel_id": "group123", "channel_type": 2}))
    assert_ok(post_raw(c, "/channel/whitelist_set", WL_PAGE_BATCH, CURL_FORM_CT))
    assert get_list(c, "whitelist", "group123", 2) == ["admin1", "admin2", "moderator1"]
    assert_ok(post_raw(c, "/channel/whitelist_set", WL_PAGE_RESET, CURL_FORM_CT))
    assert get_list(c, "whitelist", "group123", 2) == ["new_privileged_user"]
    assert_ok(post_raw(c, "/channel/whitelist_set", WL_PAGE_CLEAR_FORM, CURL_FORM_CT))
    assert get_list(c, "whitelist", "group123", 2) == []


def test_whitelist_page_status_table_400s(fresh_group123: httpx.Client) -> None:
    c = fresh_group123
    # "频道ID不能为空" / "频道类型不能为0" / "频道ID不能包含特殊字符"
    for body, code in (({"channel_id": "", "channel_type": 2, "uids": []}, "channel_id_empty"),
                       ({"channel_id": "group123", "channel_type": 0, "uids": []},
                        "channel_type_invalid"),
                       ({"channel_id": "group@123", "channel_type": 2, "uids": []},
                        "channel_id_special_char")):
        assert_error(c.post("/channel/whitelist_set", json=body), 400, code)


def test_whitelist_page_person_channel_whitelist_set(open_client: httpx.Client) -> None:
    # channel_type 1 is allowed by WuKongIM's page; person channels exist implicitly
    assert_ok(open_client.post("/channel/whitelist_set",
                               json={"channel_id": "owner_wl_page", "channel_type": 1,
                                     "uids": ["user1"]}))
    assert get_list(open_client, "whitelist", "owner_wl_page", 1) == ["user1"]
    assert [check(open_client, u, "owner_wl_page", 1) for u in ("user1", "user2")] == [1, 13]
