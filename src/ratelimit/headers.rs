//! `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11) for one policy;
//! the meaning of each parameter is in the parent module's doc.

use http::HeaderValue;

use crate::config::RatePolicy;

/// The two response fields of the IETF draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHeaders {
    /// `RateLimit-Policy`, e.g. `"default";q=200;w=2`.
    pub(crate) policy: http::HeaderValue,
    /// `RateLimit`, e.g. `"default";r=57;t=1`.
    pub(crate) state: http::HeaderValue,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The per-policy parts of the fields, built once.
pub(crate) struct PolicyHeaders {
    /// The policy name as an sf-string, quotes included.
    item: Box<str>,
    /// The whole `RateLimit-Policy` value.
    policy: HeaderValue,
}

impl PolicyHeaders {
    /// The fields of policy `name`.
    pub(crate) fn new(name: &str, settings: &RatePolicy) -> Self {
        let item = sf_string(name);
        let (quota, window) = advertised(settings);
        let policy = header_value(format!("{item};q={quota};w={window}"));
        Self {
            item: item.into(),
            policy,
        }
    }

    /// Both fields with `r = remaining` and `t = window_secs`.
    pub(crate) fn fields(&self, remaining: u32, window_secs: u64) -> RateHeaders {
        // Every response of a limited route carries this: digits by itoa, not `write!`, whose
        // formatting machinery was a visible part of the per-request profile.
        // Sized exactly: `bytes` turns a full `Vec` into a value without a second allocation.
        let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (r, t) = (r.format(remaining), t.format(window_secs));
        let mut state = Vec::with_capacity(self.item.len() + r.len() + t.len() + 6);
        for part in [&*self.item, ";r=", r, ";t=", t] {
            state.extend_from_slice(part.as_bytes());
        }
        RateHeaders {
            policy: self.policy.clone(),
            state: HeaderValue::from_maybe_shared(bytes::Bytes::from(state))
                .unwrap_or_else(|_| HeaderValue::from_static("")),
        }
    }
}

/// `(q, w)`: `w` = seconds a drained bucket takes to refill (rounded up, ≥ 1), `q` = requests the
/// rate admits in `w` (≥ burst).
fn advertised(settings: &RatePolicy) -> (u128, u128) {
    let count = u128::from(settings.rate.count.get());
    let per = settings.rate.per.as_nanos().max(1);
    let burst = u128::from(settings.burst.max(1));
    let window = (burst * per).div_ceil(count * NANOS_PER_SEC).max(1);
    let quota = (window * NANOS_PER_SEC * count / per).max(burst);
    (quota, window)
}

/// An RFC 8941 sf-string: `"` and `\` escaped, anything outside printable ASCII replaced by `?`.
fn sf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// Our values are printable ASCII by construction; an impossible failure yields an empty value.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::config::{Rate, RateKey};

    fn policy(count: u32, per_secs: u64, burst: u32) -> RatePolicy {
        RatePolicy {
            key: RateKey::Ip,
            rate: Rate {
                count: NonZeroU32::new(count).unwrap(),
                per: Duration::from_secs(per_secs),
            },
            burst,
        }
    }

    #[test]
    fn policy_field_advertises_the_rate_over_the_refill_window() {
        for (settings, expected) in [
            (policy(100, 1, 200), "\"p\";q=200;w=2"),
            (policy(100, 1, 150), "\"p\";q=200;w=2"),
            (policy(100, 1, 10), "\"p\";q=100;w=1"),
            (policy(10, 60, 20), "\"p\";q=20;w=120"),
            (policy(6, 60, 3), "\"p\";q=3;w=30"),
            (policy(5, 3600, 1), "\"p\";q=1;w=720"),
        ] {
            let headers = PolicyHeaders::new("p", &settings).fields(0, 1);
            assert_eq!(headers.policy, expected);
        }
    }

    #[test]
    fn the_state_field_names_the_policy_with_remaining_and_window() {
        let limit = PolicyHeaders::new("api", &policy(10, 1, 5));
        let fields = limit.fields(3, 60);
        assert_eq!(fields.state, "\"api\";r=3;t=60");
        let long = "x".repeat(300);
        let fields = PolicyHeaders::new(&long, &policy(10, 1, 5)).fields(u32::MAX, u64::MAX);
        assert_eq!(
            fields.state.to_str().unwrap(),
            format!("\"{long}\";r={};t={}", u32::MAX, u64::MAX)
        );
    }

    #[test]
    fn names_are_valid_sf_strings() {
        let headers = PolicyHeaders::new("we\"i\\rd é", &policy(1, 1, 1)).fields(3, 7);
        assert_eq!(headers.state, "\"we\\\"i\\\\rd ?\";r=3;t=7");
    }
}
