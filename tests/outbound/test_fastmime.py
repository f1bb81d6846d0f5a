"""The fast path of simple messages writes exactly the bytes the email package would."""
from __future__ import annotations

import itertools
import random

import pytest
from django.utils import timezone

from connections.services.outbound import addresses, fastmime, mime

SENDERS = ["support@example.test", "Acme Support <support@example.test>", '"Doe, John" <j@example.test>',
           "Zoë <z@example.test>", "Ops Team-1 <ops@sub.example.test>"]
RECIPIENTS = [[], ["a@example.test"], ["a@example.test", "B Person <b@example.test>"],
              ["x" * 30 + "@example.test", "y" * 30 + "@example.test"], ["Jörg <j@example.test>"]]
SUBJECTS = ["", "Invoice 42", "Hello  there", " leading", "trailing ", "=?utf-8?q?x?=", "Grüße", "x" * 80,
            "tab\there", "a: b; c, d <e>"]
TEXTS = ["", "x", "a\nb\n\nc", "a\r\nb\r\n", "line\n" * 3, "é", "y" * 78, "y" * 79, "\n\n", "a\rb", "a\x0bb",
         "From here\n.\n..\n"]
HEADERS = [{}, {"X-Campaign": "spring"}, {"X-Long": "v" * 80}, {"X-Grüß": "x"}, {"X-A": "ü"},
           {"Message-ID": "<given@example.test>", "X-B": "1"}]


def _both(sender, to, subject, text, headers, html=""):
    date = timezone.now()
    kwargs = dict(
        from_address=addresses.parse_address(sender, field="From"),
        to=[addresses.parse_address(a, field="To") for a in to], cc=[], reply_to=[],
        subject=subject, text=text, html=html, extra_headers=headers, message_id="<id.1@example.test>", date=date,
    )
    slow = mime.to_bytes(mime.build_message(attachments=[], **kwargs))
    fast = fastmime.build_simple(attachments=[], automatic_body=True, overridable=mime.OVERRIDABLE_HEADERS, **kwargs)
    return slow, fast


def test_fast_bytes_equal_the_email_packages_or_it_steps_aside():
    rng = random.Random(19)
    cases = list(itertools.product(SENDERS, RECIPIENTS[:3], SUBJECTS[:4], TEXTS[:5], HEADERS[:2]))
    cases += [(rng.choice(SENDERS), rng.choice(RECIPIENTS), rng.choice(SUBJECTS), rng.choice(TEXTS),
               rng.choice(HEADERS)) for _ in range(1500)]
    fast_taken = 0
    for sender, to, subject, text, headers in cases:
        try:
            headers = mime.check_extra_headers(headers)
        except Exception:
            continue
        slow, fast = _both(sender, to, subject, text, headers)
        if fast is not None:
            fast_taken += 1
            assert fast == slow, (sender, to, subject, text, headers)
    assert fast_taken > 200  # the fast path is taken where it can be


@pytest.mark.parametrize("html", ["<p>x</p>"])
def test_html_or_attachments_take_the_email_package(html):
    assert _both("a@example.test", ["b@example.test"], "s", "t", {}, html=html)[1] is None
