"""The client address rule of SPEC 5.2 (--trusted-proxies), engine/policy/clientaddr.py."""

import pytest

from engine.policy.clientaddr import ClientAddress, address_key, parse_networks

PEER = ("10.0.0.5", 40000)


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says():
    ca = ClientAddress([])
    assert ca.of(PEER, b"1.2.3.4") == "10.0.0.5"
    assert ca.of(PEER, None) == "10.0.0.5"


def test_a_trusted_peer_gives_the_last_untrusted_forwarded_entry():
    ca = ClientAddress(["10.0.0.0/8", "192.168.1.1"])
    assert ca.of(PEER, b"6.6.6.6, 1.2.3.4") == "1.2.3.4"  # a client-forged entry on the left is ignored
    assert ca.of(PEER, b"6.6.6.6, 1.2.3.4, 192.168.1.1") == "1.2.3.4"  # skips our own second proxy
    assert ca.of(PEER, b"1.2.3.4:5678") == "1.2.3.4"
    assert ca.of(PEER, None) == "10.0.0.5"  # no header: the proxy itself


def test_an_untrusted_peer_cannot_choose_its_address():
    ca = ClientAddress(["10.0.0.0/8"])
    assert ca.of(("8.8.8.8", 1), b"1.2.3.4") == "8.8.8.8"


def test_every_entry_trusted_gives_the_first_one():
    ca = ClientAddress(["10.0.0.0/8"])
    assert ca.of(PEER, b"10.1.1.1, 10.2.2.2") == "10.1.1.1"


def test_ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("::ffff:1.2.3.4") == "1.2.3.4"
    assert address_key("[2001:db8::1]:443") == "2001:db8::/64"
    ca = ClientAddress(["::1/128"])
    assert ca.of(("::1", 1, 0, 0), b"2001:db8::7") == "2001:db8::/64"


def test_no_peer_is_unknown_and_bad_ranges_are_named():
    assert ClientAddress([]).of(None, None) == "unknown"
    with pytest.raises(ValueError, match="nonsense"):
        parse_networks(["nonsense"])
