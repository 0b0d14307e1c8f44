//! Domain numbers. None converts implicitly from a bare integer: construct with `new`.

use crate::Error;
use bytes::BufMut;
use commonware_codec::Buf;
use commonware_codec::{Error as CodecError, FixedSize, Read, ReadExt, Write};
use std::fmt;

/// A quantity of the native token, in its smallest unit. All arithmetic is checked: an
/// overflow or underflow is an error, never a wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u128);

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const MAX: Amount = Amount(u128::MAX);

    pub const fn new(units: u128) -> Self {
        Self(units)
    }
    pub const fn get(self) -> u128 {
        self.0
    }
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
    /// Multiply by a count (units of work, basis points), `None` on overflow.
    pub fn checked_mul(self, factor: u128) -> Option<Amount> {
        self.0.checked_mul(factor).map(Amount)
    }
    /// `self * numerator / denominator` without intermediate overflow when the result fits:
    /// for shares such as fees in basis points. `None` if `denominator` is zero.
    pub fn mul_div(self, numerator: u128, denominator: u128) -> Option<Amount> {
        if denominator == 0 {
            return None;
        }
        let (q, r) = (self.0 / denominator, self.0 % denominator);
        // self = q*d + r, so self*n/d = q*n + r*n/d; r < d keeps r*n small when d is small.
        let whole = q.checked_mul(numerator)?;
        let part = r.checked_mul(numerator)? / denominator;
        whole.checked_add(part).map(Amount)
    }
    /// Sum a sequence, `None` on overflow.
    pub fn checked_sum(items: impl IntoIterator<Item = Amount>) -> Option<Amount> {
        items
            .into_iter()
            .try_fold(Amount::ZERO, |acc, x| acc.checked_add(x))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Amount {
    type Err = Error;
    /// Parse a non-negative decimal integer (no sign, no fraction, no exponent).
    fn from_str(s: &str) -> Result<Self, Error> {
        let err = |reason: &str| Error::Amount {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected a non-negative whole number of base units"));
        }
        s.parse::<u128>()
            .map(Amount)
            .map_err(|_| err("does not fit in 128 bits"))
    }
}

// Amounts are decimal strings in JSON: u128 does not survive JavaScript or most JSON parsers.
impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Write for Amount {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf)
    }
}
impl Read for Amount {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(u128::read(buf)?))
    }
}
impl FixedSize for Amount {
    const SIZE: usize = 16;
}

macro_rules! u64_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(u64);

        impl $name {
            pub const fn new(v: u64) -> Self {
                Self(v)
            }
            pub const fn get(self) -> u64 {
                self.0
            }
            /// The next value, `None` on overflow.
            pub fn checked_next(self) -> Option<Self> {
                self.0.checked_add(1).map(Self)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
        impl Write for $name {
            fn write(&self, buf: &mut impl BufMut) {
                self.0.write(buf)
            }
        }
        impl Read for $name {
            type Cfg = ();
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
                Ok(Self(u64::read(buf)?))
            }
        }
        impl FixedSize for $name {
            const SIZE: usize = 8;
        }
    };
}

u64_newtype!(
    /// An account's transaction counter: the next transaction it signs must carry exactly this.
    Nonce
);
u64_newtype!(
    /// A block height; genesis is height 0, the first block is height 1.
    Height
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_parse_and_display() {
        assert_eq!("0".parse::<Amount>().unwrap(), Amount::ZERO);
        assert_eq!(
            "340282366920938463463374607431768211455"
                .parse::<Amount>()
                .unwrap(),
            Amount::MAX
        );
        assert!(
            "340282366920938463463374607431768211456"
                .parse::<Amount>()
                .is_err()
        );
        assert!("-1".parse::<Amount>().is_err());
        assert!("1.5".parse::<Amount>().is_err());
        assert!("".parse::<Amount>().is_err());
        assert_eq!(Amount::new(12).to_string(), "12");
    }

    #[test]
    fn amount_checked() {
        assert_eq!(Amount::MAX.checked_add(Amount::new(1)), None);
        assert_eq!(Amount::ZERO.checked_sub(Amount::new(1)), None);
        assert_eq!(Amount::checked_sum([Amount::MAX, Amount::new(1)]), None);
        assert_eq!(
            Amount::checked_sum([Amount::new(2), Amount::new(3)]),
            Some(Amount::new(5))
        );
    }

    #[test]
    fn amount_json_is_a_string() {
        let json = serde_json::to_string(&Amount::new(u128::MAX)).unwrap();
        assert_eq!(json, "\"340282366920938463463374607431768211455\"");
        let back: Amount = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Amount::MAX);
        assert!(serde_json::from_str::<Amount>("12").is_err());
    }
}
