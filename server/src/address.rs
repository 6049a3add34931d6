//! The client's address as every per-address limit counts it: the
//! connection's, or a trusted proxy's header; an IPv6 client by its /64.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request},
    http::{header::HeaderName, HeaderMap},
};

/// The client's address as the per-address limits count it: the
/// connection's, or the last entry of the trusted proxy's header when one
/// is configured and present; see [`counted_as`].
pub fn client_address(request: &Request, header_name: Option<&HeaderName>) -> IpAddr {
    let forwarded = header_name.and_then(|name| forwarded(request.headers(), name));
    counted_as(forwarded.unwrap_or_else(|| {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
    }))
}

/// One client, as the limits count it: an IPv6 client by its /64 network
/// (what one subscriber is given, and can pick any address in), an IPv4
/// client, also written as IPv6 (`::ffff:a.b.c.d`), by its address.
pub fn counted_as(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        },
        v4 => v4,
    }
}

/// The client a trusted proxy names in header `name` (its last entry: the
/// one the proxy itself added), if any.
pub fn forwarded(headers: &HeaderMap, name: &HeaderName) -> Option<IpAddr> {
    let value = headers.get_all(name).iter().next_back()?;
    let last = value.to_str().ok()?.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_counts_by_its_network_and_a_mapped_ipv4_as_ipv4() {
        let counted = |text: &str| counted_as(text.parse().unwrap()).to_string();
        assert_eq!(
            counted("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            "2001:db8:1:2::"
        );
        assert_eq!(counted("2001:db8:1:2::1"), counted("2001:db8:1:2:ffff::"));
        assert_ne!(counted("2001:db8:1:2::1"), counted("2001:db8:1:3::1"));
        assert_eq!(counted("::ffff:203.0.113.1"), "203.0.113.1");
        assert_eq!(counted("203.0.113.1"), "203.0.113.1");
    }
}
