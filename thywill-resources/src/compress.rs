//! Precompressed variants (brotli and gzip) of text resources, made once when a resource is
//! stored and served by content negotiation.

use std::io::Write;

use thywill_core::ResourceKind;

/// Whether resources of this kind are worth compressing (text; images are already compressed,
/// except SVG).
pub fn is_compressible(kind: ResourceKind) -> bool {
    !matches!(kind, ResourceKind::Png | ResourceKind::Icon)
}

/// Gzip at `level` (0–9).
pub fn gzip(body: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 3 + 64),
        flate2::Compression::new(level.min(9)),
    );
    // Writing into a Vec cannot fail.
    if enc.write_all(body).is_err() {
        return Vec::new();
    }
    enc.finish().unwrap_or_default()
}

/// Brotli at `quality` (0–11).
pub fn brotli(body: &[u8], quality: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() / 3 + 64);
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, quality.min(11), 22);
        if w.write_all(body).is_err() || w.flush().is_err() {
            return Vec::new();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn round_trips() -> std::io::Result<()> {
        let body = "body { color: red; }\n".repeat(100);
        let gz = gzip(body.as_bytes(), 9);
        let mut back = String::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_string(&mut back)?;
        assert_eq!(back, body);
        let br = brotli(body.as_bytes(), 9);
        assert!(br.len() < gz.len() + 64);
        let mut back = String::new();
        brotli::Decompressor::new(br.as_slice(), 4096).read_to_string(&mut back)?;
        assert_eq!(back, body);
        assert!(!is_compressible(ResourceKind::Png));
        Ok(())
    }
}
