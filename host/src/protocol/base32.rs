//! Tahoe's base32: RFC 4648 alphabet in lower case, no padding.

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Encodes `bytes` as lowercase unpadded base32.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes lowercase unpadded base32, refusing any text that [`encode`] would not produce:
/// other characters, impossible lengths and non-zero trailing bits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    // Lengths whose last character would carry no whole byte cannot come from `encode`.
    if matches!(text.len() % 8, 1 | 3 | 6) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, so that each byte string has exactly one spelling.
    (buffer == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_index_vectors_from_the_reference() {
        let ascending: Vec<u8> = (0..16).collect();
        assert_eq!(encode(&ascending), "aaaqeayeaudaocajbifqydiob4");
        assert_eq!(encode(&[0xff; 16]), "77777777777777777777777774");
        assert_eq!(decode("aaaqeayeaudaocajbifqydiob4"), Some(ascending));
    }

    #[test]
    fn round_trips_every_length() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(decode(&encode(&bytes)).as_deref(), Some(&bytes[..]));
        }
    }

    #[test]
    fn refuses_non_canonical_text() {
        // Last character of a 16-byte value holds 3 data bits; `b` sets a trailing bit.
        assert_eq!(decode("aaaqeayeaudaocajbifqydiobb"), None);
        assert_eq!(decode("AAAQEAYEAUDAOCAJBIFQYDIOB4"), None);
        assert_eq!(decode("aaaqeayeaudaocajbifqydiob4="), None);
        assert_eq!(decode("a"), None);
        assert_eq!(decode("aaa"), None);
    }
}
