"""headers: the shortcut for plain ASCII headers gives what policy.default's parser gives."""
from __future__ import annotations

from tests.mailcorpus import corpus_files


def test_simple_header_shortcut_equals_the_header_parser():
    """Plain ASCII headers skip policy.default's parser; the result must be the same."""
    from email import policy
    from email.parser import BytesParser

    from connections.services.parsing import headers

    checked = 0
    samples = [("From", 'John Doe <j@example.test>'), ("From", '"Doe, John" <j@example.test>'),
               ("From", '"J. Doe" <j@example.test>'), ("To", "a@example.test"), ("Subject", "Hi  there "),
               ("Message-ID", "<a.b@c>"), ("Reply-To", "<r@example.test>")]
    for path in corpus_files():
        msg = BytesParser(policy=policy.compat32).parsebytes(path.read_bytes())
        for name in ("From", "To", "Cc", "Reply-To", "Subject", "Message-ID"):
            samples.extend((name, v) for v in headers.raw_values(msg, name))
    for name, value in samples:
        simple = headers.simple_header(name, value)
        if simple is None:
            continue
        checked += 1
        assert simple == str(headers._FACTORY(name, value)), (name, value)
    assert checked > 300
