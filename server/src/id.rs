//! The identifiers of a browser's session and of its runs, apart from the
//! runtime so that the store and the session each depend on them and not on
//! each other.

use std::fmt;

/// A browser's session: 128 random bits, written as 32 hex digits in the
/// cookie. Unguessable, so one browser can never name another's runs.
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

/// One run of a session: the session's id and the run's number. The first
/// run is number 0 and is written as the session's id alone (so a session
/// stored before sessions had many runs is its first run); a later one is
/// numbered by the millisecond it was made (Unix time), written after a
/// dot: `9f3a….1764640000000`. Numbers only grow, so an id is never given
/// to a second run, and the newest run has the highest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId {
    /// The session it belongs to.
    pub session: SessionId,
    /// Its number in the session.
    pub number: u64,
}

impl RunId {
    /// A session's first run.
    pub fn first(session: SessionId) -> RunId {
        RunId { session, number: 0 }
    }

    /// A fresh session's first run (tests, and a run with no page yet).
    pub fn random() -> RunId {
        RunId::first(SessionId::random())
    }

    /// Reads an id written by [`Display`](fmt::Display); `None` for
    /// anything else.
    pub fn parse(text: &str) -> Option<RunId> {
        let (session, number) = match text.split_once('.') {
            Some((session, number)) => {
                let canonical =
                    !number.starts_with('0') && number.bytes().all(|b| b.is_ascii_digit());
                (session, canonical.then(|| number.parse().ok()).flatten()?)
            }
            None => (text, 0),
        };
        Some(RunId {
            session: SessionId::parse(session)?,
            number,
        })
    }

    /// The session's short form, and the number when it is not the first.
    pub fn short(&self) -> String {
        match self.number {
            0 => self.session.short(),
            n => format!("{}.{n}", self.session.short()),
        }
    }
}

impl From<SessionId> for RunId {
    /// The session's first run.
    fn from(session: SessionId) -> RunId {
        RunId::first(session)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.number {
            0 => write!(f, "{}", self.session),
            n => write!(f, "{}.{n}", self.session),
        }
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.short())
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
            assert_eq!(RunId::parse(bad), None, "{bad}");
        }
        assert_eq!(id.short().len(), 8);
        assert!(id.to_string().starts_with(&id.short()));
    }

    #[test]
    fn a_first_run_is_written_as_its_session_and_later_ones_with_their_number() {
        let session = SessionId::random();
        let first = RunId::first(session);
        assert_eq!(first.to_string(), session.to_string());
        assert_eq!(RunId::parse(&session.to_string()), Some(first));
        let later = RunId {
            session,
            number: 1_764_640_000_000,
        };
        assert_eq!(later.to_string(), format!("{session}.1764640000000"));
        assert_eq!(RunId::parse(&later.to_string()), Some(later));
        assert!(later > first);
        for bad in [".0", ".01", ".-1", ".1x", ".", ".18446744073709551616"] {
            assert_eq!(RunId::parse(&format!("{session}{bad}")), None, "{bad}");
        }
    }
}
