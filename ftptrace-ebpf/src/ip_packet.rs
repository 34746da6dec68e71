//! The IP header of a packet a `cgroup_skb` program sees: family, the
//! transport protocol and where its header starts, and the packet's ends.
//! IPv4 or IPv6 as numbers, not branches: everything after would be walked
//! by the verifier once per family otherwise.

use aya_ebpf::programs::SkBuffContext;
use ftptrace_common::{AF_INET, AF_INET6, Endpoints};

pub const IPV4_HEADER: usize = 20;
pub const IPV6_HEADER: usize = 40;

pub struct IpHead {
    /// 40 bytes: the whole IPv6 header, or IPv4's plus the start of the
    /// transport header (a TCP or UDP packet over IPv4 is never shorter).
    pub bytes: [u8; IPV6_HEADER],
    pub family: u16,
    /// Where the transport header starts.
    pub transport_at: u32,
}

/// The packet's IP header when it carries `protocol`; `None` for another
/// protocol or a header too short to be one.
#[inline(always)]
pub fn ip_head(ctx: &SkBuffContext, protocol: u32) -> Result<Option<IpHead>, i64> {
    let bytes: [u8; IPV6_HEADER] = ctx.skb.load(0)?;
    let version = u32::from(bytes[0] >> 4);
    if version != 4 && version != 6 {
        return Ok(None);
    }
    let is_v6 = (version >> 1) & 1;
    let carried = u32::from(bytes[9]) * (1 - is_v6) + u32::from(bytes[6]) * is_v6;
    if carried != protocol {
        return Ok(None);
    }
    let transport_at = u32::from(bytes[0] & 0x0f) * 4 * (1 - is_v6) + IPV6_HEADER as u32 * is_v6;
    if transport_at < IPV4_HEADER as u32 {
        return Ok(None);
    }
    Ok(Some(IpHead {
        bytes,
        family: (AF_INET as u32 + (AF_INET6 - AF_INET) as u32 * is_v6) as u16,
        transport_at,
    }))
}

/// A packet's ends from its socket's side, with the ports the transport
/// header starts with: an arriving packet's destination is the local end,
/// a leaving one's source.
#[inline(always)]
pub fn packet_ends<const N: usize>(
    ip: &[u8; IPV6_HEADER],
    transport: &[u8; N],
    family: u16,
    arriving: bool,
) -> Endpoints {
    let src_port = u16::from_be_bytes([transport[0], transport[1]]);
    let dst_port = u16::from_be_bytes([transport[2], transport[3]]);
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if family == AF_INET {
        src[..4].copy_from_slice(&ip[12..16]);
        dst[..4].copy_from_slice(&ip[16..20]);
    } else {
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
    }
    Endpoints::of_packet(family, (src, src_port), (dst, dst_port), arriving)
}
