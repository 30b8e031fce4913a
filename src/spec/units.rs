//! Byte sizes (`1048576`, `1MiB`, `4M`) and durations (`30s`, `5m`) as the spec
//! writes them: parsing, printing and their JSON Schema.
//!
//! Unit letters are binary: `K` = `KiB` = 1024, `M` = `MiB` = 1024², `G` = `GiB` =
//! 1024³, `T` = `TiB` = 1024⁴. A bare integer is bytes. Durations take an integer and
//! one of `ms`, `s`, `m`, `h`, `d`; a bare integer is seconds.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written as an integer or with a binary unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// A span of time, written as an integer number of seconds or with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Duration);

const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("K", 1 << 10),
    ("KiB", 1 << 10),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("G", 1 << 30),
    ("GiB", 1 << 30),
    ("T", 1 << 40),
    ("TiB", 1 << 40),
];

const SPAN_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Splits `"12 MiB"` into `(12, "MiB")`; the number must be a plain decimal integer.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let number = text[..digits].parse().ok()?;
    Some((number, text[digits..].trim_start()))
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a size: write bytes as an integer or with a binary unit (K, KiB, M, MiB, G, GiB, T, TiB)"
            )
        };
        let (number, unit) = split_number(text).ok_or_else(bad)?;
        let (_, factor) = SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or_else(bad)?;
        number
            .checked_mul(*factor)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large a size"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, factor) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= factor && self.0 % factor == 0 {
                return write!(f, "{}{name}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a duration: write seconds as an integer or use a unit (ms, s, m, h, d)"
            )
        };
        let (number, unit) = split_number(text).ok_or_else(bad)?;
        let factor = if unit.is_empty() {
            1000
        } else {
            SPAN_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .ok_or_else(bad)?
                .1
        };
        number
            .checked_mul(factor)
            .map(|ms| Span(Duration::from_millis(ms)))
            .ok_or_else(|| format!("{text:?} is too long a duration"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        for (name, factor) in SPAN_UNITS.iter().rev() {
            if ms >= *factor && ms % factor == 0 {
                return write!(f, "{}{name}", ms / factor);
            }
        }
        write!(f, "{ms}ms")
    }
}

/// Accepts an integer or a string and hands the string form to `FromStr`.
struct IntOrText<T>(std::marker::PhantomData<T>);

impl<T> Visitor<'_> for IntOrText<T>
where
    T: std::str::FromStr<Err = String>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string with a unit")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        value.to_string().parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        if value < 0 {
            return Err(E::custom(format!("{value} is negative")));
        }
        self.visit_u64(value as u64)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        value.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntOrText(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntOrText(std::marker::PhantomData))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size in bytes: an integer, or an integer with a binary unit. K = KiB = 1024, M = MiB = 1048576, G = GiB, T = TiB (unit letters are always binary: 4M = 4MiB = 4194304).",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+\\s*(B|K|KiB|M|MiB|G|GiB|T|TiB)?\\s*$" }
            ],
            "examples": ["1MiB", 1048576, "4M"]
        })
    }
}

impl JsonSchema for Span {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: an integer number of seconds, or an integer with a unit (ms, s, m, h, d).",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+\\s*(ms|s|m|h|d)?\\s*$" }
            ],
            "examples": ["30s", "5m", 30]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!("1048576".parse::<ByteSize>(), Ok(ByteSize(1 << 20)));
        assert_eq!("1MiB".parse::<ByteSize>(), Ok(ByteSize(1 << 20)));
        assert_eq!("4M".parse::<ByteSize>(), Ok(ByteSize(4_194_304)));
        assert_eq!("4 KiB".parse::<ByteSize>(), Ok(ByteSize(4096)));
        assert!("4MB".parse::<ByteSize>().is_err());
        assert!("-4".parse::<ByteSize>().is_err());
        assert!("1.5M".parse::<ByteSize>().is_err());
        assert!("99999999999T".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn durations_take_units() {
        assert_eq!("30s".parse::<Span>(), Ok(Span(Duration::from_secs(30))));
        assert_eq!("5m".parse::<Span>(), Ok(Span(Duration::from_secs(300))));
        assert_eq!("30".parse::<Span>(), Ok(Span(Duration::from_secs(30))));
        assert_eq!(
            "250ms".parse::<Span>(),
            Ok(Span(Duration::from_millis(250)))
        );
        assert!("soon".parse::<Span>().is_err());
        assert_eq!(Span(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(Span(Duration::from_millis(1500)).to_string(), "1500ms");
    }
}
