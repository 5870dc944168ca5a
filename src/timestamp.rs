//! The one way gatehouse writes a point in time: RFC 3339 in UTC with whole seconds, as SPEC
//! shows it (`token expired at 2027-02-21T10:00:00Z`, a token store's `created`). Error messages,
//! `/config`, the session endpoint, the token store and `token list` all use it.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// `at` as RFC 3339 in UTC, truncated to the second (`2027-02-21T10:00:00Z`).
pub(crate) fn rfc3339(at: impl Into<OffsetDateTime>) -> String {
    let at = at.into().to_offset(UtcOffset::UTC);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    // Formatting fails only for years outside 0..=9999, which no token or clock here produces;
    // the Unix time still says when.
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use time::macros::datetime;

    use super::*;

    #[test]
    fn utc_whole_seconds() {
        assert_eq!(
            rfc3339(datetime!(2027-02-21 11:00:00.999 +01:00)),
            "2027-02-21T10:00:00Z"
        );
        let system = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(rfc3339(system), "1970-01-01T00:00:01Z");
    }

    #[test]
    fn out_of_range_years_fall_back_to_unix_time() {
        let far = datetime!(-0001-01-01 00:00 UTC);
        assert_eq!(rfc3339(far), far.unix_timestamp().to_string());
    }
}
