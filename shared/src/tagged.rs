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
