//! How full the ring buffer is: the kernel's producer position less the
//! reader's consumer position. Both live in pages of the ring map that any
//! holder of its fd may map (the consumer's first, the producer's after
//! it); aya keeps its own mapping private, so these are mapped a second
//! time, read-only.

use std::{
    os::fd::{AsFd, AsRawFd as _},
    sync::atomic::{AtomicU64, Ordering},
};

/// The ring's two position pages, mapped read-only.
pub struct RingFill {
    consumer: Page,
    producer: Page,
    size: u64,
}

impl RingFill {
    /// For the ring map behind `ring`, of `size` bytes.
    pub fn new(ring: &impl AsFd, size: u32) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| std::io::Error::last_os_error())?;
        Ok(Self {
            consumer: Page::map(ring, 0, page)?,
            producer: Page::map(ring, page, page)?,
            size: u64::from(size),
        })
    }

    /// The ring's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes written by the kernel and not yet read, record headers
    /// included.
    pub fn used(&self) -> u64 {
        let producer = self.producer.position();
        let consumer = self.consumer.position();
        producer.saturating_sub(consumer).min(self.size)
    }
}

/// One page of the ring map, mapped read-only; its first word is a
/// position the kernel (producer) or the reader (consumer) advances.
struct Page {
    at: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl Page {
    fn map(ring: &impl AsFd, offset: usize, len: usize) -> std::io::Result<Self> {
        let offset = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
        // SAFETY: a new shared read-only mapping of the map's fd; nothing
        // else is placed at the address the kernel picks.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                ring.as_fd().as_raw_fd(),
                offset,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let at = std::ptr::NonNull::new(at).ok_or_else(std::io::Error::last_os_error)?;
        Ok(Self { at, len })
    }

    fn position(&self) -> u64 {
        // SAFETY: the mapping is page-aligned and lives as long as `self`;
        // the kernel and the reader update the word atomically.
        let word = unsafe { &*self.at.as_ptr().cast::<AtomicU64>() };
        word.load(Ordering::Acquire)
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.at.as_ptr(), self.len) };
    }
}
