//! The `envelope` target: the wire-protocol decoder on arbitrary input.
//!
//! Properties, for any input text:
//!
//! 1. `ClientFrame::decode(text, 64 KiB)` returns (never panics); it refuses text over the
//!    limit as `TooBig` with the true size, and only such text.
//! 2. A smaller limit taken from the input changes nothing but the size check.
//! 3. A frame it accepts re-encodes (`encode`) to a JSON object tagged by `t`, and that text
//!    decodes again to an equal frame (see [`crate::json`] for floats), which encodes to the
//!    same text.
//! 4. The same holds for `ServerFrame::decode`, which has no size limit.

use serde::Serialize;
use thywill_core::protocol::{ClientFrame, ProtocolError, ServerFrame};

use crate::{FRAME_LIMIT, json, text};

/// Checks one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let text = text(data);
    let text = text.as_ref();

    let decoded = ClientFrame::decode(text, FRAME_LIMIT);
    match &decoded {
        Ok(frame) => {
            assert!(text.len() <= FRAME_LIMIT, "accepted {} bytes", text.len());
            round_trip(frame, ClientFrame::encode, |t| ClientFrame::decode(t, usize::MAX));
        }
        Err(ProtocolError::TooBig { size, limit }) => {
            assert_eq!((*size, *limit), (text.len(), FRAME_LIMIT));
            assert!(
                text.len() > FRAME_LIMIT,
                "refused {} bytes as too big",
                text.len()
            );
        }
        Err(ProtocolError::Malformed(message)) => {
            assert!(text.len() <= FRAME_LIMIT, "parsed {} bytes", text.len());
            assert!(!message.is_empty(), "empty error message");
        }
        Err(other) => panic!("undocumented error {other:?}"),
    }

    // A limit below or above the text's size, chosen by the input's first byte.
    let limit = usize::from(data.first().copied().unwrap_or(0)) * 4;
    match ClientFrame::decode(text, limit) {
        Err(ProtocolError::TooBig { size, limit: l }) => {
            assert!(size == text.len() && l == limit && size > limit, "{size} > {l}");
        }
        small => {
            assert!(
                text.len() <= limit,
                "{} bytes passed a limit of {limit}",
                text.len()
            );
            assert_eq!(
                small.as_ref().ok(),
                decoded.as_ref().ok(),
                "the limit changed the frame"
            );
        }
    }

    if let Ok(frame) = ServerFrame::decode(text) {
        round_trip(&frame, ServerFrame::encode, ServerFrame::decode);
    }
}

/// Encode, decode, compare; then encode again and compare the texts.
fn round_trip<F, E>(frame: &F, encode: impl Fn(&F) -> String, decode: impl Fn(&str) -> Result<F, E>)
where
    F: Serialize + PartialEq + std::fmt::Debug,
    E: std::fmt::Display,
{
    let encoded = encode(frame);
    let tag = serde_json::from_str::<serde_json::Value>(&encoded)
        .ok()
        .and_then(|v| v.get("t").and_then(|t| t.as_str().map(str::to_owned)));
    assert!(
        tag.is_some(),
        "{frame:?} encoded as {encoded:?}, without a `t` tag"
    );

    let again = match decode(&encoded) {
        Ok(again) => again,
        Err(e) => panic!("{frame:?} encoded as {encoded:?}, which does not decode: {e}"),
    };
    if json::exact_floats() {
        assert_eq!(&again, frame, "changed by a round trip through {encoded:?}");
        assert_eq!(encode(&again), encoded, "encoding is not stable");
    } else {
        let (a, b) = (serde_json::to_value(frame), serde_json::to_value(&again));
        match (a, b) {
            (Ok(a), Ok(b)) => assert!(
                json::same(&a, &b),
                "{frame:?} changed by a round trip through {encoded:?} into {again:?}"
            ),
            (a, b) => panic!("frames do not serialise: {a:?} {b:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float drift of [`crate::json`], on a real frame: a message whose number changes in
    /// the last place on its way through `decode`, `encode` and `decode`, unless serde_json
    /// reads floats exactly.
    #[test]
    fn a_float_drifts_through_a_round_trip_unless_parsing_is_exact() {
        let text = r#"{"t":"msg","app":"echo","data":4.361681611574796e-22}"#;
        let frame = ClientFrame::decode(text, FRAME_LIMIT).ok();
        let again = frame
            .as_ref()
            .and_then(|f| ClientFrame::decode(&f.encode(), FRAME_LIMIT).ok());
        assert!(frame.is_some() && again.is_some());
        let parsed_exactly = serde_json::from_str::<f64>("4.361681611574796e-22")
            .is_ok_and(|f| f.to_bits() == 4.361681611574796e-22f64.to_bits());
        assert_eq!(frame == again, parsed_exactly, "{frame:?} {again:?}");
        check(text.as_bytes());
    }
}
