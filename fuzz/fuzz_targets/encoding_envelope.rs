#![no_main]
//! Parses arbitrary bytes as a versioned envelope and as a sequence of canonical fields.
//!
//! Checks: nothing panics or allocates beyond the limits; an accepted envelope re-encodes to the
//! same bytes; the fields that decode re-encode to exactly the bytes they were read from.

use crypto::encoding::{EnvelopeSpec, Reader, Writer};

const SPEC: EnvelopeSpec = EnvelopeSpec {
    name: "fuzz envelope",
    magic: *b"FUZZ",
    min_version: 1,
    max_version: 2,
    max_body_len: 4096,
};

/// One decoded field; the tag byte before it chose its type.
enum Field<'a> {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    Bool(bool),
    Bytes(&'a [u8]),
    List(Vec<&'a [u8]>),
}

fn read_field<'a>(tag: u8, r: &mut Reader<'a>) -> Result<Field<'a>, crypto::Error> {
    Ok(match tag % 7 {
        0 => Field::U8(r.u8("u8")?),
        1 => Field::U16(r.u16("u16")?),
        2 => Field::U32(r.u32("u32")?),
        3 => Field::U64(r.u64("u64")?),
        4 => Field::Bool(r.bool("bool")?),
        5 => Field::Bytes(r.bytes("bytes", 256)?),
        _ => Field::List(r.vec("list", 16, 4, |r| r.bytes("item", 64))?),
    })
}

fn write_field(w: &mut Writer, f: &Field<'_>) {
    match f {
        Field::U8(v) => drop(w.put_u8(*v)),
        Field::U16(v) => drop(w.put_u16(*v)),
        Field::U32(v) => drop(w.put_u32(*v)),
        Field::U64(v) => drop(w.put_u64(*v)),
        Field::Bool(v) => drop(w.put_bool(*v)),
        Field::Bytes(b) => drop(w.put_bytes(b, 256).expect("decoded within the limit")),
        Field::List(items) => drop(
            w.put_vec(items, 16, |w, item| w.put_bytes(item, 64).map(|_| ()))
                .expect("decoded within the limit"),
        ),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(env) = SPEC.decode(data) {
        let again = SPEC
            .encode(env.version, env.kind, env.body)
            .expect("a decoded envelope is within the limits");
        assert_eq!(again, data);
        assert!(env.expect_kind(env.kind).is_ok());
    }

    let mut r = Reader::new(data);
    let mut good = 0;
    let mut w = Writer::new();
    while let Ok(tag) = r.u8("tag") {
        match read_field(tag, &mut r) {
            Ok(field) => {
                w.put_u8(tag);
                write_field(&mut w, &field);
                good = r.position();
            }
            Err(_) => break,
        }
    }
    assert_eq!(w.as_slice(), &data[..good]);
    if good == data.len() {
        assert!(Reader::new(&data[good..]).finish("fields").is_ok());
    }
});
