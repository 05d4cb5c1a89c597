//! Canonical byte encoding shared by every wire and disk format of the appliance.
//!
//! The rules are few and strict:
//!
//! - integers are little-endian and fixed width (`u8`, `u16`, `u32`, `u64`);
//! - a byte string or a vector is a `u32` count followed by its items, and every reader states
//!   the largest count it accepts: the count is checked against that limit and against the bytes
//!   left **before** anything is allocated;
//! - [`Reader::finish`] rejects trailing bytes, so every value has exactly one encoding;
//! - files and messages are wrapped in a versioned [`EnvelopeSpec`] envelope:
//!   `magic [u8; 4] || version u16 || kind u16 || body_len u32 || body`.
//!
//! ```
//! use epa_crypto::encoding::{Reader, Writer};
//!
//! let mut w = Writer::new();
//! w.put_u32(7);
//! w.put_bytes(b"payload", 1024).expect("7 bytes are under the 1024-byte limit");
//! let bytes = w.into_bytes();
//!
//! let mut r = Reader::new(&bytes);
//! assert_eq!(r.u32("shard").unwrap(), 7);
//! assert_eq!(r.bytes("body", 1024).unwrap(), b"payload");
//! r.finish("example").unwrap();
//! ```

use crate::Error;

/// Appends canonical encodings to a growing byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Appends one byte.
    pub fn put_u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a little-endian `u16`.
    pub fn put_u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u32`.
    pub fn put_u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u64`.
    pub fn put_u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a boolean as one byte, 0 or 1.
    pub fn put_bool(&mut self, v: bool) -> &mut Self {
        self.put_u8(u8::from(v))
    }

    /// Appends raw bytes with no length prefix (for fixed-size fields the reader knows the size
    /// of, read back with [`Reader::array`] or [`Reader::take`]).
    pub fn put_raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Appends a `u32` length then the bytes. Fails if `bytes` is longer than `max`, the limit
    /// the matching [`Reader::bytes`] call will enforce, so a writer never produces what its
    /// reader rejects.
    pub fn put_bytes(&mut self, bytes: &[u8], max: u32) -> Result<&mut Self, Error> {
        let len = check_count("byte string", bytes.len(), max)?;
        self.put_u32(len);
        Ok(self.put_raw(bytes))
    }

    /// Appends a `u32` item count then each item written by `put_item`. Fails if there are
    /// more than `max` items or if `put_item` fails.
    pub fn put_vec<T>(
        &mut self,
        items: &[T],
        max: u32,
        mut put_item: impl FnMut(&mut Writer, &T) -> Result<(), Error>,
    ) -> Result<&mut Self, Error> {
        let count = check_count("vector", items.len(), max)?;
        self.put_u32(count);
        for item in items {
            put_item(self, item)?;
        }
        Ok(self)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The finished encoding.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

fn check_count(what: &'static str, len: usize, max: u32) -> Result<u32, Error> {
    match u32::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(Error::TooLong {
            what,
            len: len as u64,
            max: u64::from(max),
        }),
    }
}

/// Reads canonical encodings from a byte slice, front to back.
///
/// Every method names what it reads (`what`) so errors say where the input went wrong.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, positioned at its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes, without copying.
    pub fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                what,
                needed: n as u64,
                remaining: self.remaining(),
                offset: self.pos,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(what, N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A boolean byte; anything but 0 or 1 is [`Error::InvalidValue`].
    pub fn bool(&mut self, what: &'static str) -> Result<bool, Error> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Error::InvalidValue {
                what,
                value: u64::from(v),
            }),
        }
    }

    /// A `u32`-length-prefixed byte string of at most `max` bytes, without copying. The length
    /// is checked against `max` and against the bytes left before the slice is taken.
    pub fn bytes(&mut self, what: &'static str, max: u32) -> Result<&'a [u8], Error> {
        let len = self.u32(what)?;
        if len > max {
            return Err(Error::TooLong {
                what,
                len: u64::from(len),
                max: u64::from(max),
            });
        }
        self.take(what, len as usize)
    }

    /// A `u32`-count-prefixed vector of at most `max` items, each read by `read_item`. The count
    /// is checked against `max` before anything is allocated, and the initial allocation is
    /// also bounded by the bytes left (`min_item_len` is the smallest encoding of one item, at
    /// least 1 is assumed), so a forged count cannot reserve memory the input cannot back.
    pub fn vec<T>(
        &mut self,
        what: &'static str,
        max: u32,
        min_item_len: usize,
        mut read_item: impl FnMut(&mut Reader<'a>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let count = self.u32(what)?;
        if count > max {
            return Err(Error::TooLong {
                what,
                len: u64::from(count),
                max: u64::from(max),
            });
        }
        let min_total = u64::from(count) * min_item_len.max(1) as u64;
        if min_total > self.remaining() as u64 {
            return Err(Error::Truncated {
                what,
                needed: min_total,
                remaining: self.remaining(),
                offset: self.pos,
            });
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            out.push(read_item(self)?);
        }
        Ok(out)
    }

    /// The rest of the input, consuming it.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Succeeds only if every byte was read: canonical encodings have no trailing bytes.
    pub fn finish(self, what: &'static str) -> Result<(), Error> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(Error::TrailingBytes { what, count }),
        }
    }
}

/// Length of an envelope header: magic (4) + version (2) + kind (2) + body length (4).
pub const ENVELOPE_HEADER_LEN: usize = 12;

/// The shape of one family of versioned envelopes: which magic, which versions this build
/// reads, and how large a body may be.
///
/// Layout: `magic [u8; 4] || version u16 || kind u16 || body_len u32 || body`, all integers
/// little-endian, nothing after the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeSpec {
    /// Format name used in error messages.
    pub name: &'static str,
    /// The first four bytes of every envelope of this family.
    pub magic: [u8; 4],
    /// Oldest version this build reads.
    pub min_version: u16,
    /// Newest version this build reads (and the one it writes by default).
    pub max_version: u16,
    /// Largest body accepted, in bytes.
    pub max_body_len: u32,
}

/// A decoded envelope, borrowing its body from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Format version of the body.
    pub version: u16,
    /// What the body holds; meaning is up to the format.
    pub kind: u16,
    /// The body bytes.
    pub body: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// The body if the envelope holds `kind`, else [`Error::UnexpectedKind`].
    pub fn expect_kind(&self, kind: u16) -> Result<&'a [u8], Error> {
        if self.kind == kind {
            Ok(self.body)
        } else {
            Err(Error::UnexpectedKind {
                expected: kind,
                found: self.kind,
            })
        }
    }
}

impl EnvelopeSpec {
    fn check_version(&self, version: u16) -> Result<(), Error> {
        if (self.min_version..=self.max_version).contains(&version) {
            Ok(())
        } else {
            Err(Error::UnsupportedVersion {
                what: self.name,
                version,
                min: self.min_version,
                max: self.max_version,
            })
        }
    }

    /// Wraps `body` in an envelope. Fails if the version is outside this spec's range or the body
    /// is over the limit (so a writer never produces what its reader rejects).
    pub fn encode(&self, version: u16, kind: u16, body: &[u8]) -> Result<Vec<u8>, Error> {
        self.check_version(version)?;
        let len = check_count(self.name, body.len(), self.max_body_len)?;
        let mut w = Writer::with_capacity(ENVELOPE_HEADER_LEN + body.len());
        w.put_raw(&self.magic)
            .put_u16(version)
            .put_u16(kind)
            .put_u32(len)
            .put_raw(body);
        Ok(w.into_bytes())
    }

    /// Parses an envelope: magic, supported version, body length within the limit and equal to
    /// the bytes that follow (no truncation, no trailing bytes).
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Envelope<'a>, Error> {
        let mut r = Reader::new(bytes);
        let magic = r.array::<4>("envelope magic")?;
        if magic != self.magic {
            return Err(Error::BadMagic {
                expected: self.magic,
                found: magic,
            });
        }
        let version = r.u16("envelope version")?;
        self.check_version(version)?;
        let kind = r.u16("envelope kind")?;
        let body = r.bytes(self.name, self.max_body_len)?;
        r.finish(self.name)?;
        Ok(Envelope {
            version,
            kind,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC: EnvelopeSpec = EnvelopeSpec {
        name: "test envelope",
        magic: *b"TEST",
        min_version: 1,
        max_version: 3,
        max_body_len: 256,
    };

    #[derive(Debug, Clone, PartialEq)]
    struct Record {
        a: u8,
        b: u16,
        c: u32,
        d: u64,
        flag: bool,
        fixed: [u8; 5],
        blob: Vec<u8>,
        list: Vec<Vec<u8>>,
    }

    fn write(r: &Record) -> Vec<u8> {
        let mut w = Writer::new();
        w.put_u8(r.a)
            .put_u16(r.b)
            .put_u32(r.c)
            .put_u64(r.d)
            .put_bool(r.flag)
            .put_raw(&r.fixed);
        w.put_bytes(&r.blob, 64).unwrap();
        w.put_vec(&r.list, 8, |w, item| w.put_bytes(item, 16).map(|_| ()))
            .unwrap();
        w.into_bytes()
    }

    fn read(bytes: &[u8]) -> Result<Record, Error> {
        let mut r = Reader::new(bytes);
        let rec = Record {
            a: r.u8("a")?,
            b: r.u16("b")?,
            c: r.u32("c")?,
            d: r.u64("d")?,
            flag: r.bool("flag")?,
            fixed: r.array("fixed")?,
            blob: r.bytes("blob", 64)?.to_vec(),
            list: r.vec("list", 8, 4, |r| Ok(r.bytes("item", 16)?.to_vec()))?,
        };
        r.finish("record")?;
        Ok(rec)
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            any::<u8>(),
            any::<u16>(),
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            any::<[u8; 5]>(),
            proptest::collection::vec(any::<u8>(), 0..=64),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=16), 0..=8),
        )
            .prop_map(|(a, b, c, d, flag, fixed, blob, list)| Record {
                a,
                b,
                c,
                d,
                flag,
                fixed,
                blob,
                list,
            })
    }

    #[test]
    fn little_endian_layout() {
        let mut w = Writer::new();
        w.put_u16(0x0102)
            .put_u32(0x0304_0506)
            .put_u64(0x0708_090a_0b0c_0d0e);
        assert_eq!(
            w.as_slice(),
            &[2, 1, 6, 5, 4, 3, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 9, 8, 7]
        );
    }

    #[test]
    fn envelope_golden_layout() {
        let env = SPEC.encode(2, 0x0304, b"xyz").unwrap();
        assert_eq!(env, b"TEST\x02\x00\x04\x03\x03\x00\x00\x00xyz");
    }

    proptest! {
        #[test]
        fn record_round_trip(rec in record()) {
            let bytes = write(&rec);
            prop_assert_eq!(read(&bytes)?, rec);
        }

        #[test]
        fn record_rejects_every_truncation_and_extension(rec in record(), extra in 1u8..=255) {
            let bytes = write(&rec);
            for cut in 0..bytes.len() {
                let is_truncated = matches!(read(&bytes[..cut]), Err(Error::Truncated { .. }));
                prop_assert!(is_truncated, "cut at {}", cut);
            }
            let mut longer = bytes.clone();
            longer.push(extra);
            prop_assert_eq!(read(&longer), Err(Error::TrailingBytes { what: "record", count: 1 }));
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read(&bytes);
            let _ = SPEC.decode(&bytes);
        }

        #[test]
        fn envelope_round_trip(version in 1u16..=3, kind in any::<u16>(),
                               body in proptest::collection::vec(any::<u8>(), 0..=256)) {
            let bytes = SPEC.encode(version, kind, &body)?;
            prop_assert_eq!(bytes.len(), ENVELOPE_HEADER_LEN + body.len());
            let env = SPEC.decode(&bytes)?;
            prop_assert_eq!(env, Envelope { version, kind, body: &body });
            prop_assert_eq!(env.expect_kind(kind)?, &body[..]);
            prop_assert_eq!(env.expect_kind(kind.wrapping_add(1)),
                Err(Error::UnexpectedKind { expected: kind.wrapping_add(1), found: kind }));
        }
    }

    #[test]
    fn envelope_errors() {
        let good = SPEC.encode(1, 9, b"hello").unwrap();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert!(matches!(
            SPEC.decode(&bad_magic),
            Err(Error::BadMagic { found, .. }) if &found == b"XEST"
        ));
        let mut v4 = good.clone();
        v4[4] = 4;
        assert_eq!(
            SPEC.decode(&v4),
            Err(Error::UnsupportedVersion {
                what: "test envelope",
                version: 4,
                min: 1,
                max: 3
            })
        );
        assert!(SPEC.encode(0, 1, b"").is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            SPEC.decode(&trailing),
            Err(Error::TrailingBytes {
                what: "test envelope",
                count: 1
            })
        );
        assert!(matches!(
            SPEC.decode(&good[..good.len() - 1]),
            Err(Error::Truncated { .. })
        ));
        // A header claiming a body over the limit is refused before the body is looked at.
        let mut huge = good[..8].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            SPEC.decode(&huge),
            Err(Error::TooLong {
                what: "test envelope",
                len: u64::from(u32::MAX),
                max: 256
            })
        );
        assert!(matches!(
            SPEC.encode(1, 1, &[0u8; 257]),
            Err(Error::TooLong { len: 257, .. })
        ));
    }

    #[test]
    fn limits_checked_before_allocation() {
        // A vector claiming u32::MAX items with 4 bytes of input must fail on the count, not try
        // to allocate.
        let mut w = Writer::new();
        w.put_u32(u32::MAX).put_u32(0);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.vec("v", u32::MAX, 1, |r| r.u8("x")),
            Err(Error::Truncated { needed, .. }) if needed == u64::from(u32::MAX)
        ));
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.vec("v", 10, 1, |r| r.u8("x")),
            Err(Error::TooLong { len, max: 10, .. }) if len == u64::from(u32::MAX)
        ));
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.bytes("b", 100),
            Err(Error::TooLong { max: 100, .. })
        ));
        let mut w = Writer::new();
        assert!(w.put_bytes(&[0u8; 11], 10).is_err());
        assert!(w.is_empty(), "a refused write leaves the writer untouched");
    }

    #[test]
    fn bool_is_strict() {
        assert_eq!(Reader::new(&[0]).bool("f"), Ok(false));
        assert_eq!(Reader::new(&[1]).bool("f"), Ok(true));
        assert_eq!(
            Reader::new(&[2]).bool("f"),
            Err(Error::InvalidValue {
                what: "f",
                value: 2
            })
        );
    }
}
