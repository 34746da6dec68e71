//! A small reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! ftptrace needs two things from it: byte offsets of struct members (to find
//! a socket's network namespace, and to read a socket where a tracepoint gives
//! only the pointer) and enum values by name (to decode print formats that
//! leave enum constants unresolved). That is a few hundred lines of format,
//! so we read it ourselves rather than take a parser with a licence that does
//! not suit a statically linked binary.

use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF data (bad magic or header)")]
    BadHeader,
    #[error("BTF data truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown BTF kind {kind} at type id {id}")]
    UnknownKind { kind: u32, id: u32 },
}

#[derive(Clone, Copy, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
struct Type {
    kind: u32,
    /// The referenced type for typedef/const/volatile/ptr and friends.
    type_ref: u32,
    members: Vec<Member>,
}

/// Parsed BTF: the struct/union/enum facts ftptrace asks for.
pub struct Btf {
    /// Index 0 is `void`; BTF type ids index this directly.
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
    enum_values: HashMap<String, i64>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    let bytes = data.get(at..at + 4).ok_or(BtfError::Truncated(at))?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

impl Btf {
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(BtfError::BadHeader)?;
        if magic != MAGIC {
            return Err(BtfError::BadHeader);
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let type_start = hdr_len + type_off;
        let type_end = type_start + type_len;
        let str_start = hdr_len + str_off;
        let strings = data
            .get(str_start..str_start + str_len)
            .ok_or(BtfError::Truncated(str_start))?
            .to_vec();
        if type_end > data.len() {
            return Err(BtfError::Truncated(type_end));
        }

        let mut btf = Self {
            types: vec![Type {
                kind: 0,
                type_ref: 0,
                members: Vec::new(),
            }],
            strings,
            structs_by_name: HashMap::new(),
            enum_values: HashMap::new(),
        };
        let mut at = type_start;
        while at < type_end {
            let id = u32::try_from(btf.types.len()).map_err(|_| BtfError::Truncated(at))?;
            let name_off = u32_at(data, at)?;
            let info = u32_at(data, at + 4)?;
            let size_or_type = u32_at(data, at + 8)?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => at += 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => {}
                KIND_ARRAY => at += 12,
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        let offset = u32_at(data, at + 8)?;
                        members.push(Member {
                            name_off: u32_at(data, at)?,
                            type_id: u32_at(data, at + 4)?,
                            // With kind_flag the top byte is a bitfield size.
                            bit_offset: if kind_flag {
                                offset & 0x00ff_ffff
                            } else {
                                offset
                            },
                        });
                        at += 12;
                    }
                }
                KIND_ENUM => {
                    for _ in 0..vlen {
                        let name = btf.string(u32_at(data, at)?).to_owned();
                        let value = i64::from(u32_at(data, at + 4)?.cast_signed());
                        btf.enum_values.entry(name).or_insert(value);
                        at += 8;
                    }
                }
                KIND_ENUM64 => {
                    for _ in 0..vlen {
                        let name = btf.string(u32_at(data, at)?).to_owned();
                        let lo = u64::from(u32_at(data, at + 4)?);
                        let hi = u64::from(u32_at(data, at + 8)?);
                        btf.enum_values
                            .entry(name)
                            .or_insert((hi << 32 | lo).cast_signed());
                        at += 12;
                    }
                }
                KIND_FUNC_PROTO => at += 8 * vlen,
                KIND_DATASEC => at += 12 * vlen,
                _ => return Err(BtfError::UnknownKind { kind, id }),
            }
            if kind == KIND_STRUCT || kind == KIND_UNION {
                let name = btf.string(name_off);
                // Keep the first definition with members: forward-declared
                // or empty duplicates must not shadow the real layout.
                if !name.is_empty() && !members.is_empty() {
                    btf.structs_by_name.entry(name.to_owned()).or_insert(id);
                }
            }
            btf.types.push(Type {
                kind,
                type_ref: size_or_type,
                members,
            });
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let start = offset as usize;
        let Some(tail) = self.strings.get(start..) else {
            return "";
        };
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or("")
    }

    /// Follows typedef/const/volatile/restrict/type-tag to the real type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let ty = self.types.get(id as usize)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.type_ref;
                }
                _ => return Some(ty),
            }
        }
        None
    }

    /// Bit offset of `name` inside `ty`, looking through anonymous structs
    /// and unions, with the member's type id.
    fn find_member(&self, ty: &Type, name: &str) -> Option<(u32, u32)> {
        for member in &ty.members {
            let member_name = self.string(member.name_off);
            if member_name == name {
                return Some((member.bit_offset, member.type_id));
            }
            if member_name.is_empty()
                && let Some(inner) = self.resolve(member.type_id)
                && matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some((offset, type_id)) = self.find_member(inner, name)
            {
                return Some((member.bit_offset + offset, type_id));
            }
        }
        None
    }

    /// Byte offset of a member path inside `struct_name`, e.g.
    /// `member_offset("sock", &["__sk_common", "skc_net", "net"])`.
    pub fn member_offset(&self, struct_name: &str, path: &[&str]) -> Option<u32> {
        let mut ty = self
            .types
            .get(*self.structs_by_name.get(struct_name)? as usize)?;
        let mut bits = 0;
        for (index, name) in path.iter().enumerate() {
            let (offset, type_id) = self.find_member(ty, name)?;
            bits += offset;
            if index + 1 < path.len() {
                ty = self.resolve(type_id)?;
                if !matches!(ty.kind, KIND_STRUCT | KIND_UNION) {
                    return None;
                }
            }
        }
        (bits % 8 == 0).then_some(bits / 8)
    }

    /// Value of an enumerator, e.g. `enum_value("TCP_ESTABLISHED")`.
    pub fn enum_value(&self, name: &str) -> Option<i64> {
        self.enum_values.get(name).copied()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds BTF bytes from (name, info, size_or_type, extra words) entries.
    pub(crate) struct Builder {
        strings: Vec<u8>,
        types: Vec<u8>,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Self {
                strings: vec![0],
                types: Vec::new(),
            }
        }

        pub(crate) fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        pub(crate) fn ty(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            size_or_type: u32,
            extra: &[u32],
        ) {
            let name = self.str(name);
            for word in [name, (kind << 24) | vlen, size_or_type]
                .iter()
                .chain(extra)
            {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
        }

        pub(crate) fn build(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for word in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// id 1 int; id 2 anonymous union { int a; int b; } at; id 3 struct
    /// inner { int x; union {a; b}; }; id 4 typedef inner_t; id 5 struct outer
    /// { int pad; inner_t in; }; id 6 enum { ONE = 1, MINUS = -1 }.
    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        b.ty("int", KIND_INT, 0, 4, &[32]);
        let (a, bb) = (b.str("a"), b.str("b"));
        b.ty("", KIND_UNION, 2, 4, &[a, 1, 0, bb, 1, 0]);
        let x = b.str("x");
        b.ty("inner", KIND_STRUCT, 2, 8, &[x, 1, 0, 0, 2, 32]);
        b.ty("inner_t", KIND_TYPEDEF, 0, 3, &[]);
        let (pad, inn) = (b.str("pad"), b.str("in"));
        b.ty("outer", KIND_STRUCT, 2, 12, &[pad, 1, 0, inn, 4, 32]);
        let (one, minus) = (b.str("ONE"), b.str("MINUS"));
        b.ty("", KIND_ENUM, 2, 4, &[one, 1, minus, u32::MAX]);
        b.build()
    }

    #[test]
    fn member_offsets_follow_typedefs_and_anonymous_unions() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", &["pad"]), Some(0));
        assert_eq!(btf.member_offset("outer", &["in"]), Some(4));
        assert_eq!(btf.member_offset("outer", &["in", "x"]), Some(4));
        assert_eq!(btf.member_offset("outer", &["in", "b"]), Some(8));
        assert_eq!(btf.member_offset("outer", &["in", "nope"]), None);
        assert_eq!(btf.member_offset("missing", &["x"]), None);
        // `pad` is an int: there is nothing inside it to look for.
        assert_eq!(btf.member_offset("outer", &["pad", "x"]), None);
    }

    #[test]
    fn enum_values_by_name() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.enum_value("ONE"), Some(1));
        assert_eq!(btf.enum_value("MINUS"), Some(-1));
        assert_eq!(btf.enum_value("TWO"), None);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert_eq!(
            Btf::parse(b"hello world, not btf at all").err(),
            Some(BtfError::BadHeader)
        );
        let mut data = sample();
        data.truncate(40);
        assert!(matches!(Btf::parse(&data), Err(BtfError::Truncated(_))));
    }

    #[test]
    fn unknown_kinds_are_errors_not_misreads() {
        let mut b = Builder::new();
        b.ty("odd", 31, 0, 0, &[]);
        assert_eq!(
            Btf::parse(&b.build()).err(),
            Some(BtfError::UnknownKind { kind: 31, id: 1 })
        );
    }

    /// The running kernel's BTF, where readable (no root needed): the offsets
    /// ftptrace asks for must all resolve.
    #[test]
    fn host_vmlinux_has_the_members_we_need() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("skipped: /sys/kernel/btf/vmlinux is not readable here");
            return;
        };
        let btf = Btf::parse(&data).unwrap();
        assert!(
            btf.member_offset("sock", &["__sk_common", "skc_net", "net"])
                .is_some()
        );
        assert!(btf.member_offset("net", &["ns", "inum"]).is_some());
        assert_eq!(btf.member_offset("inet_sock", &["sk"]), Some(0));
        assert_eq!(btf.enum_value("TCP_ESTABLISHED"), Some(1));
    }
}
