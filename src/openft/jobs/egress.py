"""Egress policy: which URLs the server itself may call (webhook endpoints), checked where it connects.

A URL is refused unless it is ``http``/``https`` with a host and no credentials, and EVERY address its
host resolves to is public: loopback, private (RFC 1918, unique local), link-local, shared (CGNAT),
multicast, unspecified, documentation, reserved and the IPv6 forms that carry such an IPv4 address
(mapped, translated, NAT64, 6to4) are refused, and cloud metadata services always are. An operator may
allow non-public addresses (``OPENFT_WEBHOOK_ALLOW_PRIVATE_ADDRESSES``), never metadata services.

The check resolves the name itself, and :func:`post` connects to one of the addresses it checked
(never resolving again, so a name cannot answer one address to the check and another to the
connection), keeping the name in the ``Host`` header and in TLS (SNI and certificate verification).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

from openft.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack instance metadata
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity credentials
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::23",  # AWS EKS Pod Identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_NON_PUBLIC: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), what)
    for net, what in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "a reserved (IETF protocol) address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a reserved (6to4 relay) address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a reserved (benchmarking) address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/8", "a reserved address"),
        ("64:ff9b:1::/48", "a private (local NAT64) address"),
        ("100::/64", "a reserved (discard) address"),
        ("2001::/23", "a reserved (IETF protocol) address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("fc00::/7", "a private (unique local) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_HOST = re.compile(r"^[A-Za-z0-9_.-]+$")
_ALLOW_SETTING = "OPENFT_WEBHOOK_ALLOW_PRIVATE_ADDRESSES"


class EgressRefused(InvalidRequest):
    """The URL names a destination this server does not send requests to."""

    default_code = "invalid_url"


@dataclass(frozen=True)
class Destination:
    """A checked URL and the addresses its host resolved to, every one of them allowed."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, translated, NAT64, 6to4), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _TRANSLATED or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_problem(ip: IPAddress) -> tuple[str, bool] | None:
    """Why the server should not connect to ``ip``, or None for a public address.

    Returns:
        What kind of address it is (``"a private address"``), and whether no setting allows it (True
        for cloud metadata services, whose answers include credentials).
    """
    if ip in _METADATA:
        return "a cloud metadata address", True
    inner = _embedded_ipv4(ip)
    if inner is not None:  # a connection to it reaches ``inner``: judge that one
        problem = address_problem(inner)
        return None if problem is None else (f"an IPv6 form of {inner}, {problem[0]}", problem[1])
    for network, what in _NON_PUBLIC:
        if ip in network:
            return what, False
    if not ip.is_global:  # whatever this Python's registry knows beyond the table above
        return "not a public address", False
    return None


def parse_url(url: str) -> httpx.URL:
    """``url`` as httpx will send it.

    Raises:
        EgressRefused: not a URL, not http(s), no host, a host that is not a name or address, or credentials.
    """
    try:
        parsed = httpx.URL(url)
    except Exception as exc:  # httpx raises InvalidURL, and others for odd input
        raise EgressRefused(f"url is not a valid URL: {exc}", param="url") from exc
    if parsed.scheme not in ("http", "https"):
        raise EgressRefused("url must be an http:// or https:// URL.", param="url")
    if not parsed.raw_host:
        raise EgressRefused("url must name a host.", param="url")
    if parsed.userinfo:
        raise EgressRefused("url must not contain credentials (user:password@).", param="url")
    host = parsed.raw_host.decode("ascii")
    if not _HOST.match(host) and not _is_ip(host):
        raise EgressRefused(f"url names an invalid host {host[:100]!r}.", param="url")
    return parsed


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise EgressRefused(f"url's host {host} could not be resolved: {exc}", param="url") from exc
    addresses = [ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]) for *_, sockaddr in found]
    if not addresses:
        raise EgressRefused(f"url's host {host} has no address.", param="url")
    return tuple(dict.fromkeys(addresses))


class EgressPolicy:
    """Checks URLs against the policy; ``allow_private_addresses`` is the operator's opt-out."""

    def __init__(self, *, allow_private_addresses: bool = False):
        self.allow_private_addresses = allow_private_addresses

    def check(self, url: str) -> Destination:
        """Parse ``url`` and resolve its host (getaddrinfo, as a connection would).

        Raises:
            EgressRefused: a malformed URL, a host that does not resolve, or one that resolves to any
                address the policy refuses (the message names the address and why).
        """
        parsed = parse_url(url)
        host = parsed.raw_host.decode("ascii")
        addresses = _resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
        for ip in addresses:
            problem = address_problem(ip)
            if problem is None or (self.allow_private_addresses and not problem[1]):
                continue
            what, always = problem
            named = host if _is_ip(host) else f"{host} resolves to {ip}"
            hint = "" if always else f" (an operator may allow them with {_ALLOW_SETTING}=true)"
            raise EgressRefused(f"url refused: {named}, {what}; webhooks are not sent there{hint}.", param="url")
        return Destination(url=parsed, addresses=addresses)


def post(client: httpx.Client, destination: Destination, *, content: bytes, headers: dict[str, str]) -> int:
    """POST ``content`` to ``destination`` through a connection to one of its checked addresses.

    The request goes to the address itself (tried in resolution order until one connects) with the
    URL's name as ``Host`` and, over https, as TLS server name for SNI and certificate verification.
    The body of the answer is not read. ``client`` must not follow redirects or use proxies.

    Returns:
        The answer's HTTP status code.

    Raises:
        httpx.HTTPError: no address accepted the connection, TLS failed, or a timeout.
    """
    url = destination.url
    name = url.raw_host.decode("ascii")
    extensions = {"sni_hostname": name} if url.scheme == "https" else {}
    sent_headers = {**headers, "host": url.netloc.decode("ascii")}
    error: httpx.ConnectError | None = None
    for ip in destination.addresses:
        pinned = url.copy_with(host=str(ip))
        try:
            with client.stream("POST", pinned, content=content, headers=sent_headers, extensions=extensions) as answer:
                return answer.status_code
        except httpx.ConnectError as exc:  # the next address may answer (a host with IPv4 and IPv6)
            error = exc
    assert error is not None
    raise error
