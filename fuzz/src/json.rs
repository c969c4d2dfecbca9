//! Comparing JSON values after a trip through text, allowing for how this build's serde_json
//! reads floats.
//!
//! Without its `float_roundtrip` feature (the workspace does not enable it) serde_json reads
//! floats on a fast, best-effort path that may land a unit or two in the last place (ULP) away
//! from the nearest double: `4.250095954519634e-241`, the shortest text of one double, reads
//! back as its neighbour `4.2500959545196336e-241`. A frame with such a number is therefore
//! not always equal to itself after `encode` and `decode` (about one float in ten changes).
//! [`exact_floats`] finds out once which parser this build has: with the exact one, frames
//! must be equal, bit for bit; with the best-effort one, floats may differ by at most
//! [`MAX_ULPS`] and everything else must still be equal. Set `THYWILL_FUZZ_STRICT_FLOATS=1`
//! to compare exactly anyway (the `envelope` target then finds such a float in seconds).

use std::sync::OnceLock;

use serde_json::{Number, Value};

/// How far apart (in units in the last place) two floats may be and still count as the same
/// number when serde_json reads floats on its best-effort path. Measured drift is at most 2.
pub const MAX_ULPS: u64 = 4;

/// Whether this build's serde_json reads every float exactly (its `float_roundtrip` feature is
/// on): then a float's shortest text reads back as the same float. Printed once when not.
/// `THYWILL_FUZZ_STRICT_FLOATS` (set to anything) makes it `true` regardless.
pub fn exact_floats() -> bool {
    static EXACT: OnceLock<bool> = OnceLock::new();
    *EXACT.get_or_init(|| {
        if std::env::var_os("THYWILL_FUZZ_STRICT_FLOATS").is_some() {
            return true;
        }
        // The shortest text of a double that the best-effort parser reads one ULP off.
        const PROBE: &str = "4.250095954519634e-241";
        let exact = serde_json::from_str::<f64>(PROBE)
            .ok()
            .and_then(|f| serde_json::to_string(&f).ok())
            .is_some_and(|text| text == PROBE);
        if !exact {
            eprintln!(
                "thywill-fuzz: serde_json reads floats best-effort (no `float_roundtrip` feature): \
                 a float may come back from encode+decode up to {MAX_ULPS} ULPs off; \
                 compared with that tolerance"
            );
        }
        exact
    })
}

/// Whether `a` and `b` are the same JSON value: equal, except that two floats may differ by
/// [`MAX_ULPS`] unless [`exact_floats`].
pub fn same(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    if exact_floats() {
        return false;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => close(x, y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
        }
        _ => false,
    }
}

/// Two numbers that are both floats (neither an integer) and at most [`MAX_ULPS`] apart.
fn close(x: &Number, y: &Number) -> bool {
    if !x.is_f64() || !y.is_f64() {
        return false;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => ulps_apart(x, y) <= MAX_ULPS,
        _ => false,
    }
}

/// Distance of two finite doubles in units in the last place (`u64::MAX` across signs).
pub fn ulps_apart(x: f64, y: f64) -> u64 {
    if x == y {
        return 0;
    }
    if x.is_sign_negative() != y.is_sign_negative() {
        return u64::MAX;
    }
    x.to_bits().abs_diff(y.to_bits())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn neighbours_are_one_ulp_apart() {
        let x = 1.5f64;
        assert_eq!(ulps_apart(x, f64::from_bits(x.to_bits() + 1)), 1);
        assert_eq!(ulps_apart(-x, f64::from_bits((-x).to_bits() + 2)), 2);
        assert_eq!(ulps_apart(0.0, -0.0), 0);
        assert_eq!(ulps_apart(1.0, -1.0), u64::MAX);
    }

    #[test]
    fn only_floats_get_a_tolerance() {
        let a = 4.250095954519634e-241f64;
        let b = f64::from_bits(a.to_bits() + 1);
        let far = f64::from_bits(a.to_bits() + MAX_ULPS + 1);
        assert!(same(&json!({"x": [a]}), &json!({"x": [a]})));
        assert_eq!(same(&json!({"x": [a]}), &json!({"x": [b]})), !exact_floats());
        assert!(!same(&json!([a]), &json!([far])));
        assert!(!same(&json!(1), &json!(1.0)));
        assert!(!same(&json!({"a": 1.0}), &json!({"b": 1.0})));
        assert!(!same(&json!([1.0, 2.0]), &json!([1.0])));
    }
}
