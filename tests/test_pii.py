"""PII redaction: every type found in its usual formats, look-alikes left alone, overlaps resolved by priority."""

from __future__ import annotations

import datetime

import pytest

from genchain.data.pii import card_network, cn_id_valid, find_pii, luhn_valid, redact


@pytest.mark.parametrize(("text", "expected"), [
    ("Write to anna.berg+news@mail.example.org today.", "Write to [EMAIL] today."),
    ("请发邮件至zhang_wei88@163.com，谢谢。", "请发邮件至[EMAIL]，谢谢。"),
    ("Call (415) 555-2671 after five.", "Call [PHONE] after five."),
    ("London office: 020 7946 0958.", "London office: [PHONE]."),
    ("Paris: +33 1 42 68 53 00, Berlin: +49 30 1234567.", "Paris: [PHONE], Berlin: [PHONE]."),
    ("手机13812345678，座机010-12345678。", "手机[PHONE]，座机[PHONE]。"),
    ("WhatsApp +86 138 1234 5678 or +91 98765 43210", "WhatsApp [PHONE] or [PHONE]"),
    ("Numbers: 4155552671 / 0121 234 9762 (+1 201-555-5444)", "Numbers: [PHONE] / [PHONE] ([PHONE])"),
    ("Visa 4111 1111 1111 1111 and Amex 3782-822463-10005.", "Visa [CARD] and Amex [CARD]."),
    ("Mastercard 5555555555554444 expires soon", "Mastercard [CARD] expires soon"),
    ("Server at 192.168.1.10. Backup at 2001:db8::8a2e:370:7334!", "Server at [IP]. Backup at [IP]!"),
    ("loopback ::1 and mapped ::ffff:10.0.0.1", "loopback [IP] and mapped [IP]"),
    ("身份证号11010519491231002X已登记。", "身份证号[CN_ID]已登记。"),
])
def test_each_type_is_redacted_in_common_formats(text, expected):
    assert redact(text).text == expected


@pytest.mark.parametrize("text", [
    "In 1999 and again in 2024 the club won; tickets cost $1,299.99 or ¥3500.",
    "Order #A58213 shipped on 2023-10-05 at 12:30:45; invoice INV-88231 due 05/10/2023.",
    "Tracking number 4111111111111112 (Luhn fails) and 4111 1111 1111 1112.",
    "Reference 4973654480725130 starts with 49 but is no German phone number.",
    "身份证号 110105194912310021 校验失败，110105194913320015 日期不对。",
    "Upgrade from v1.2.3 to 3.12.0-rc1 or Windows 10.0.19041.1.",
    "Home :: News :: Sport, std::vector<int>, a MAC 00:1a:2b:3c:4d:5e.",
    "ISBN 978-3-16-148410-0, screen 1920x1080, score 2-1.",
    "Sat 23 Aug 2003 08 30 36 +0200 -rw-r----- 1 root shadow 1695 Aug 30 10:38",
    "Population 1,234,567 (census 2020); 2023年10月5日下午3点见。",
])
def test_look_alikes_are_left_alone(text):
    result = redact(text)
    assert result.text == text and result.counts == {}


def test_counts_per_type_and_overlap_priority():
    text = ("Card 4111-1111-1111-1111, ID 11010519491231002X, mail 13812345678@qq.com, "
            "phone 13912345678, ip 8.8.8.8, and 4111111111111111 again.")
    result = redact(text)
    assert result.counts == {"CARD": 2, "CN_ID": 1, "EMAIL": 1, "PHONE": 1, "IP": 1}
    assert result.text == ("Card [CARD], ID [CN_ID], mail [EMAIL], phone [PHONE], ip [IP], and [CARD] again.")
    # the e-mail's digits are a valid Chinese mobile number, but the e-mail claims them first
    assert [e.kind for e in find_pii("13812345678@qq.com")] == ["EMAIL"]
    # 16 digits that are a valid card and might read as a phone number are a card
    assert [e.kind for e in find_pii("pay 4012888888881881 now")] == ["CARD"]


def test_validators():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert card_network("4111111111111111") == "visa" and card_network("378282246310005") == "amex"
    assert card_network("2221000000000009") == "mastercard" and card_network("1111111111111117") is None
    assert card_network("411111111111111111") is None  # 18 digits: no network issues that length for Visa
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("110105194912310021")
    assert not cn_id_valid("990105194912310023")  # province code 99 does not exist
    assert cn_id_valid("110105209912310029", today=datetime.date(2100, 1, 1))
    assert not cn_id_valid("110105209912310029", today=datetime.date(2025, 1, 1))  # born in the future
    assert redact("nothing here").counts == {} and redact("").text == ""
