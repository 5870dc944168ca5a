//! [`AddedHeaders`]: the headers the gateway adds to an upstream request (forwarded headers,
//! the request id, the caller's identity), kept beside the client's `HeaderMap` instead of
//! inserted into it.
//!
//! Each name is one the map does not hold: the client's values were removed first, or the client
//! sent none (identity headers are stripped on arrival). So the lean exchange writes them after
//! the map's headers with no hash insert each and no growth of the map, and hyper's client, which
//! needs one map, gets them appended. The same headers go upstream either way.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Headers to send upstream after the request's own, in the order they were added.
#[derive(Debug, Clone, Default)]
pub struct AddedHeaders(Vec<(HeaderName, HeaderValue)>);

impl AddedHeaders {
    /// Empty, with room for `capacity` headers.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// Adds `name: value`. The caller makes sure the request's map holds no `name`, or means the
    /// value to follow the map's (as a repeated header does).
    pub fn push(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.push((name, value));
    }

    /// The first value added under `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The headers, in the order they were added.
    pub fn as_slice(&self) -> &[(HeaderName, HeaderValue)] {
        &self.0
    }

    /// Appends every header to `map` (for hyper's client, which sends one map).
    pub fn append_to(self, map: &mut HeaderMap) {
        for (name, value) in self.0 {
            map.append(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_after_the_map_in_order_and_repeats_kept() {
        let mut added = AddedHeaders::with_capacity(2);
        added.push(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("1"),
        );
        added.push(
            HeaderName::from_static("x-b"),
            HeaderValue::from_static("2"),
        );
        added.push(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("3"),
        );
        assert_eq!(added.get(&HeaderName::from_static("x-a")).unwrap(), "1");
        assert_eq!(added.get(&HeaderName::from_static("x-c")), None);
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static("h"));
        added.append_to(&mut map);
        let seen: Vec<_> = map
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
            .collect();
        assert_eq!(seen, ["host=h", "x-a=1", "x-a=3", "x-b=2"]);
    }
}
