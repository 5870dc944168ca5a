//! Parsers for the human units used in `gateway.toml`: durations (`"250ms"`, `"30d"`), sizes
//! (`1024`, `"64KiB"`, `"10MiB"`) and rates (`"100/s"`, `"10/min"`, `"5/h"`).
//!
//! Each parser returns a message that names what was expected, so `gatehouse check` can print
//! `gateway.toml: limits.idle_timeout: invalid duration "5 parsecs": expected …`.

use std::num::NonZeroU32;
use std::time::Duration;

/// A request rate: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// How many requests are admitted per period.
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
}

/// Parses `"250ms"`, `"10s"`, `"5m"`, `"12h"`, `"30d"` (also `"1h30m"`, and `"0"`).
///
/// # Errors
/// A message naming the accepted forms.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration {text:?}: expected a number and a unit (ms, s, m, h, d), like \"250ms\" or \"10s\""
        )
    };
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    if trimmed.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        let millis = value.checked_mul(millis_per_unit).ok_or_else(invalid)?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(invalid)?;
    }
    Ok(total)
}

/// Parses a size: a plain number of bytes, or a number with `B`, `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`.
///
/// # Errors
/// A message naming the accepted forms.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "invalid size {text:?}: expected bytes or a number with a unit, like \"64KiB\" or \"10MiB\""
        )
    };
    let trimmed = text.trim();
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(invalid());
    }
    let value: u64 = trimmed[..digits].parse().map_err(|_| invalid())?;
    let multiplier: u64 = match trimmed[digits..].trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(invalid()),
    };
    value.checked_mul(multiplier).ok_or_else(invalid)
}

/// Parses `"N/s"`, `"N/min"`, `"N/h"` (also `"N/m"` for minutes) with N ≥ 1.
///
/// # Errors
/// A message naming the accepted forms.
pub(crate) fn parse_rate(text: &str) -> Result<Rate, String> {
    let invalid =
        || format!("invalid rate {text:?}: expected \"N/s\", \"N/min\" or \"N/h\" with N >= 1");
    let (count, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
    let count: u32 = count.trim().parse().map_err(|_| invalid())?;
    let count = NonZeroU32::new(count).ok_or_else(invalid)?;
    let per = match unit.trim() {
        "s" | "sec" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(invalid()),
    };
    Ok(Rate { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        for (text, millis) in [
            ("250ms", 250),
            ("10s", 10_000),
            ("5m", 300_000),
            ("12h", 43_200_000),
            ("30d", 2_592_000_000),
            ("1h30m", 5_400_000),
            ("0", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_are_refused_with_the_input_named() {
        for text in [
            "",
            "10",
            "5 parsecs",
            "s",
            "-1s",
            "1.5s",
            "99999999999999999999d",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains("invalid duration"), "{err}");
        }
    }

    #[test]
    fn sizes_with_and_without_units() {
        for (text, bytes) in [
            ("1024", 1024),
            ("64KiB", 65_536),
            ("10MiB", 10_485_760),
            ("1GiB", 1 << 30),
            ("2KB", 2000),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in ["", "+1", "ten", "1TiB", "18446744073709551615GiB"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
    }

    #[test]
    fn rates_per_second_minute_hour() {
        let rate = parse_rate("100/s").unwrap();
        assert_eq!((rate.count.get(), rate.per), (100, Duration::from_secs(1)));
        assert_eq!(parse_rate("10/min").unwrap().per, Duration::from_secs(60));
        assert_eq!(parse_rate("5/h").unwrap().per, Duration::from_secs(3600));
        for text in ["0/s", "10", "10/day", "x/s"] {
            assert!(parse_rate(text).is_err(), "{text}");
        }
    }
}
