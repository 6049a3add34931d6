//! Reading an internally tagged enum tag first. serde's derive buffers a
//! tagged message whole before it reads it (the tag may come anywhere), and
//! compiles every field's reading a second time, from that buffer: for the
//! stream's updates, some 8 KiB of the browser's gzipped download. What
//! Hailstone writes always has the tag first (serde writes it so), so it is
//! read in one pass; a message whose first field is not the tag is refused.

use std::{borrow::Cow, fmt, marker::PhantomData};

use serde::de::{value::MapAccessDeserializer, Deserializer, Error, MapAccess, Visitor};

/// A type written as serde writes an internally tagged enum.
pub(crate) trait TagFirst<'de>: Sized {
    /// The tag's field.
    const TAG: &'static str;
    /// The tag's values.
    const VARIANTS: &'static [&'static str];

    /// The variant `tag` names, from the fields after the tag.
    fn variant<M: MapAccess<'de>>(
        tag: &str,
        rest: MapAccessDeserializer<M>,
    ) -> Result<Self, M::Error>;

    /// What an unknown tag is answered.
    fn unknown<E: Error>(tag: &str) -> E {
        E::unknown_variant(tag, Self::VARIANTS)
    }
}

/// Reads a `T` whose first field is its tag.
pub(crate) fn deserialize<'de, T: TagFirst<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    struct Fields<T>(PhantomData<T>);

    impl<'de, T: TagFirst<'de>> Visitor<'de> for Fields<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a map whose first field is {:?}", T::TAG)
        }

        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<T, M::Error> {
            if map.next_key::<Cow<'de, str>>()?.as_deref() != Some(T::TAG) {
                return Err(M::Error::custom(format_args!(
                    "the first field must be {:?}",
                    T::TAG
                )));
            }
            let tag = map.next_value::<Cow<'de, str>>()?;
            T::variant(&tag, MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(Fields(PhantomData))
}

/// One of two kinds, written as the second kind's own fields or as
/// `{KEY: first}`, and read in one pass by its first key: a run of either
/// kind whose second kind's JSON stays as it was before the first came.
/// (serde's untagged enums buffer each value whole and compile every
/// field's reading a second time, from that buffer.)
pub(crate) enum Either<A, B> {
    /// Written under the key.
    Keyed(A),
    /// Written as its own fields.
    Fields(B),
}

/// Writes `value` as `{key: value}`.
pub(crate) fn serialize_keyed<S: serde::Serializer, T: serde::Serialize>(
    serializer: S,
    key: &'static str,
    value: &T,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(1))?;
    map.serialize_entry(key, value)?;
    map.end()
}

/// Reads `{key: A}`, or else a `B` from its fields.
pub(crate) fn deserialize_keyed_or<'de, A, B, D>(
    deserializer: D,
    key: &'static str,
) -> Result<Either<A, B>, D::Error>
where
    A: serde::Deserialize<'de>,
    B: serde::Deserialize<'de>,
    D: Deserializer<'de>,
{
    struct Fields<A, B> {
        key: &'static str,
        kinds: PhantomData<(A, B)>,
    }

    impl<'de, A, B> Visitor<'de> for Fields<A, B>
    where
        A: serde::Deserialize<'de>,
        B: serde::Deserialize<'de>,
    {
        type Value = Either<A, B>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a map")
        }

        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let first = map.next_key::<Cow<'de, str>>()?;
            if first.as_deref() == Some(self.key) {
                let value = map.next_value()?;
                if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(M::Error::custom(format_args!(
                        "{:?} must be the only field",
                        self.key
                    )));
                }
                return Ok(Either::Keyed(value));
            }
            B::deserialize(MapAccessDeserializer::new(Unread { first, map })).map(Either::Fields)
        }
    }

    deserializer.deserialize_map(Fields {
        key,
        kinds: PhantomData,
    })
}

/// A map whose first key was read already: it is given again first.
struct Unread<'de, M> {
    first: Option<Cow<'de, str>>,
    map: M,
}

impl<'de, M: MapAccess<'de>> MapAccess<'de> for Unread<'de, M> {
    type Error = M::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, M::Error> {
        use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
        match self.first.take() {
            Some(Cow::Borrowed(key)) => seed
                .deserialize(BorrowedStrDeserializer::new(key))
                .map(Some),
            Some(Cow::Owned(key)) => seed.deserialize(StringDeserializer::new(key)).map(Some),
            None => self.map.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, M::Error> {
        self.map.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}
