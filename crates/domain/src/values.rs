//! Validated value types: an invalid quantity, amount, currency or identifier cannot be built,
//! so it never reaches an aggregate or a port.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

/// A value that breaks a validation rule. Always answered as "unprocessable" at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    #[error("unit price must not be negative")]
    NegativePrice,
    #[error("amount must be greater than zero")]
    NonPositiveAmount,
    #[error("unknown ISO 4217 currency code {0:?}")]
    UnknownCurrency(String),
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} must be at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} may contain only letters, digits, '-', '_', '.' and ':'")]
    BadCharacters { field: &'static str },
    #[error(
        "{field} must not contain control characters (NUL, tab, line breaks and the like), \
         Unicode line or paragraph separators, or bidirectional formatting characters"
    )]
    ControlCharacters { field: &'static str },
}

/// Active ISO 4217 codes (funds and precious metals included; XTS and XXX excluded). Sorted.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE",
    "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL",
    "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
    "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD",
    "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK",
    "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO",
    "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON",
    "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD",
    "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD",
    "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV",
    "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD",
    "XPF", "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
];

/// An ISO 4217 currency code such as `EUR`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses an upper-case ISO 4217 code.
    ///
    /// # Errors
    /// [`ValidationError::UnknownCurrency`] for anything that is not an active code.
    pub fn new(code: &str) -> Result<Self, ValidationError> {
        match ISO_4217.binary_search(&code) {
            Ok(_) => {
                let b = code.as_bytes();
                Ok(Self([b[0], b[1], b[2]]))
            }
            Err(_) => Err(ValidationError::UnknownCurrency(code.to_owned())),
        }
    }

    /// Every code [`Currency::new`] accepts, sorted (the API document lists them as an enum).
    pub fn codes() -> &'static [&'static str] {
        ISO_4217
    }

    /// The three-letter code.
    pub fn as_str(&self) -> &str {
        // Only ASCII codes from the table are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::new(&code).map_err(D::Error::custom)
    }
}

/// A number of units of a product: at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// # Errors
    /// [`ValidationError::ZeroQuantity`] for 0.
    pub fn new(value: u32) -> Result<Self, ValidationError> {
        if value == 0 {
            Err(ValidationError::ZeroQuantity)
        } else {
            Ok(Self(value))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A price per unit in integer minor units (cents): zero or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UnitPrice(i64);

impl UnitPrice {
    /// # Errors
    /// [`ValidationError::NegativePrice`] below zero.
    pub fn new(cents: i64) -> Result<Self, ValidationError> {
        if cents < 0 {
            Err(ValidationError::NegativePrice)
        } else {
            Ok(Self(cents))
        }
    }

    pub fn cents(self) -> i64 {
        self.0
    }
}

/// An amount of money moved in or out of an account, in minor units: strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Amount(i64);

impl Amount {
    /// # Errors
    /// [`ValidationError::NonPositiveAmount`] for zero or less.
    pub fn new(cents: i64) -> Result<Self, ValidationError> {
        if cents <= 0 {
            Err(ValidationError::NonPositiveAmount)
        } else {
            Ok(Self(cents))
        }
    }

    pub fn cents(self) -> i64 {
        self.0
    }
}

macro_rules! validated_deserialize {
    ($ty:ident, $inner:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $ty::new(<$inner>::deserialize(d)?).map_err(D::Error::custom)
            }
        }
    };
}
validated_deserialize!(Quantity, u32);
validated_deserialize!(UnitPrice, i64);
validated_deserialize!(Amount, i64);

/// Whether `c` may not appear in any text that comes from outside: control characters (C0,
/// DEL, C1: NUL, tab, line breaks), the Unicode line and paragraph separators (U+2028, U+2029:
/// line breaks to JavaScript and many log viewers) and the bidirectional formatting characters
/// (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069: they make a text display other
/// than it reads, as in "Trojan Source").
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `text` holds a character [`is_forbidden_char`] refuses.
pub fn has_forbidden_chars(text: &str) -> bool {
    text.chars().any(is_forbidden_char)
}

/// Defines a validated, non-empty, bounded text value.
macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, identifier = $ident:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// # Errors
            /// A forbidden character anywhere ([`is_forbidden_char`]: control characters, tabs
            /// and line breaks included, Unicode separators and bidirectional controls; they
            /// corrupt logs, headers and exports downstream), longer than the limit (counted
            /// before trimming), empty after trimming, or (for identifiers, which are never
            /// trimmed) with characters outside `[A-Za-z0-9-_.:]`.
            pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
                let value: String = value.into();
                if has_forbidden_chars(&value) {
                    return Err(ValidationError::ControlCharacters { field: $field });
                }
                // Counted before trimming, and identifiers are not trimmed at all, so that the
                // rule is the one the API document states (maxLength, pattern) and a value the
                // document calls invalid is never accepted.
                if value.chars().count() > $max {
                    return Err(ValidationError::TooLong { field: $field, max: $max });
                }
                let trimmed = value.trim();
                if trimmed.is_empty() {
                    return Err(ValidationError::Empty { field: $field });
                }
                if $ident
                    && !value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
                {
                    return Err(ValidationError::BadCharacters { field: $field });
                }
                Ok(Self(trimmed.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $name::new(String::deserialize(d)?).map_err(D::Error::custom)
            }
        }
    };
}

text_value!(
    /// The identifier of a customer, as issued by the identity provider.
    CustomerId, "customerId", 64, identifier = true
);
text_value!(
    /// The identifier of a product in the catalogue.
    ProductId, "productId", 64, identifier = true
);
text_value!(
    /// A free-text postal address.
    ShippingAddress, "shippingAddress", 500, identifier = false
);
text_value!(
    /// The carrier's tracking number of a shipment.
    TrackingNumber, "trackingNumber", 100, identifier = false
);
text_value!(
    /// Why an order was cancelled.
    CancellationReason, "reason", 500, identifier = false
);
text_value!(
    /// The caller's reference of a deposit or withdrawal (an invoice or transfer id).
    Reference, "reference", 200, identifier = false
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_currency_table_is_sorted_so_binary_search_works() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn known_currencies_parse_and_unknown_ones_are_rejected() {
        assert_eq!(
            Currency::new("EUR").map(|c| c.to_string()),
            Ok("EUR".to_owned())
        );
        assert!(matches!(
            Currency::new("eur"),
            Err(ValidationError::UnknownCurrency(_))
        ));
        assert!(matches!(
            Currency::new("ABC"),
            Err(ValidationError::UnknownCurrency(_))
        ));
        assert!(matches!(
            Currency::new(""),
            Err(ValidationError::UnknownCurrency(_))
        ));
    }

    #[test]
    fn numbers_outside_their_range_cannot_be_built() {
        assert_eq!(Quantity::new(0), Err(ValidationError::ZeroQuantity));
        assert_eq!(UnitPrice::new(-1), Err(ValidationError::NegativePrice));
        assert!(UnitPrice::new(0).is_ok());
        assert_eq!(Amount::new(0), Err(ValidationError::NonPositiveAmount));
        assert_eq!(Amount::new(-5), Err(ValidationError::NonPositiveAmount));
    }

    #[test]
    fn free_text_is_trimmed_identifiers_are_not_and_both_are_bounded_before_trimming() {
        assert_eq!(
            ShippingAddress::new("  1 Main St ").map(|a| a.to_string()),
            Ok("1 Main St".to_owned())
        );
        assert_eq!(
            ProductId::new("  sku-1 "),
            Err(ValidationError::BadCharacters { field: "productId" })
        );
        assert!(matches!(
            ShippingAddress::new(format!(" {} ", "a".repeat(499))),
            Err(ValidationError::TooLong { max: 500, .. })
        ));
        assert_eq!(
            ProductId::new("   "),
            Err(ValidationError::Empty { field: "productId" })
        );
        assert_eq!(
            ProductId::new("a b"),
            Err(ValidationError::BadCharacters { field: "productId" })
        );
        assert!(matches!(
            CustomerId::new("x".repeat(65)),
            Err(ValidationError::TooLong { .. })
        ));
        assert!(ShippingAddress::new("1 Main St, Springfield").is_ok());
    }

    #[test]
    fn text_values_with_control_characters_cannot_be_built() {
        for text in [
            "a\u{0}b", "a\tb", "a\nb", "line\r\n", "\u{7f}", "a\u{85}b", "\u{9b}x",
        ] {
            assert_eq!(
                ShippingAddress::new(text),
                Err(ValidationError::ControlCharacters {
                    field: "shippingAddress"
                }),
                "{text:?}"
            );
            assert_eq!(
                Reference::new(text),
                Err(ValidationError::ControlCharacters { field: "reference" }),
                "{text:?}"
            );
        }
        assert_eq!(
            ProductId::new("sku\u{0}"),
            Err(ValidationError::ControlCharacters { field: "productId" })
        );
        assert!(serde_json::from_str::<TrackingNumber>("\"1Z\\u0000\"").is_err());
        assert!(serde_json::from_str::<ShippingAddress>("\"a\\u2028b\"").is_err());
        assert!(ShippingAddress::new("Straße 1, 1010 Wien ✓").is_ok());
    }

    #[test]
    fn text_values_with_unicode_separators_or_bidi_controls_cannot_be_built() {
        for text in [
            "line\u{2028}break",
            "para\u{2029}graph",
            "invoice \u{202E}fdp.exe",
            "\u{202A}x",
            "x\u{2066}y\u{2069}",
            "\u{200F}",
            "\u{061C}a",
        ] {
            assert_eq!(
                ShippingAddress::new(text),
                Err(ValidationError::ControlCharacters {
                    field: "shippingAddress"
                }),
                "{text:?}"
            );
        }
        // Ordinary non-ASCII text, right-to-left scripts included, is fine.
        assert!(ShippingAddress::new("שדרות רוטשילד 1, תל אביב").is_ok());
        assert!(CancellationReason::new("client a changé d’avis — merci").is_ok());
    }

    #[test]
    fn deserialising_validates_too() {
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Currency>("\"XYZ\"").is_err());
        assert!(serde_json::from_str::<Amount>("10").is_ok());
    }
}
