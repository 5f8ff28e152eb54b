#!/usr/bin/env python3
"""Compares two DNS servers' answers name by name with dnspython, an independent codec.

    compare_answers.py PRIMARY SECONDARY NAME/TYPE...

PRIMARY and SECONDARY are IP:PORT. Each question is asked over TCP of both; the rcodes and
the answer sections' RRsets (owner, type, TTL, rdata; RRsets as sets, so SRV and A order do
not matter) must be equal. Prints every difference and exits 1 when there is one.
"""

import sys

import dns.message
import dns.query
import dns.rdatatype


def answer(server, name, rdtype):
    host, port = server.rsplit(":", 1)
    query = dns.message.make_query(name, rdtype)
    reply = dns.query.tcp(query, host, port=int(port), timeout=10)
    rrsets = {
        (rrset.name.to_text().lower(), rrset.rdtype, rrset.ttl, frozenset(r.to_text() for r in rrset))
        for rrset in reply.answer
    }
    return reply.rcode(), rrsets


def main():
    primary, secondary, questions = sys.argv[1], sys.argv[2], sys.argv[3:]
    differences = 0
    for question in questions:
        name, rdtype = question.rsplit("/", 1)
        rdtype = dns.rdatatype.from_text(rdtype)
        want = answer(primary, name, rdtype)
        got = answer(secondary, name, rdtype)
        if want != got:
            differences += 1
            print(f"{question}: primary {want}, secondary {got}")
    print(f"{len(questions)} questions compared, {differences} differ")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
