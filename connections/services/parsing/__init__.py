"""Parse a raw mail into headers, bodies and attachments — without ever losing it.

    parse.py         parse_bytes (a mail in memory), parse_file (a mail in a file, bounded
                     memory), parse_headers_only: the entry points
    splitter.py      the one MIME splitter: a mail's leaf parts as byte ranges, cut exactly as
                     the email package's feedparser cuts them, over a file or a buffer
    lines.py         where the splitter reads from: a file or bytes/memoryview, line by line
    leaves.py        a leaf part held in memory: parsed (or shortcut) and walked
    big_leaves.py    a leaf part too big for memory: transfer-decoded in chunks to a file
    transfer.py      base64 and quoted-printable decoding in one call or chunk by chunk
    walk.py          an email.message tree walked into bodies and attachments
    attachments.py   attachment records and the one file-name sanitiser
    header_block.py  a header section read into an email.message.Message
    headers.py       the one header decoder (subject, addresses, date, message id)
    charsets.py      text decoding in declared, aliased and mislabelled charsets
    results.py       ParsedMessage and ParsedAttachment
"""
