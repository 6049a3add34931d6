//! A session's identifier, apart from the session so that the store and the
//! session each depend on it and not on each other.

use std::fmt;

/// A session's identifier: 128 random bits, written as 32 hex digits in the
/// cookie. Unguessable, so one browser can never name another's session.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u128);

impl SessionId {
    /// A fresh identifier from the operating system's random source.
    pub fn random() -> SessionId {
        SessionId(rand::random())
    }

    /// Reads an identifier written by [`Display`](fmt::Display); `None` for
    /// anything else.
    pub fn parse(text: &str) -> Option<SessionId> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(SessionId)
    }

    /// The first eight hex digits: enough to tell sessions apart in a log,
    /// too few to take one over.
    pub fn short(&self) -> String {
        format!("{:08x}", self.0 >> 96)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_forgeries() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_ne!(SessionId::random(), id);
        for bad in [
            "",
            "xyz",
            &"g".repeat(32),
            &"0".repeat(31),
            &"0".repeat(33),
            "+0000000000000000000000000000000",
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad}");
        }
        assert_eq!(id.short().len(), 8);
        assert!(id.to_string().starts_with(&id.short()));
    }
}
