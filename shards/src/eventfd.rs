//! A Linux eventfd: the doorbell an `io_uring` disk rings on every completion, so that the
//! shard can sleep in epoll and still wake when its journal's I/O finishes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking eventfd.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
        #[allow(unsafe_code)]
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor eventfd just returned, owned by nothing else.
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    /// Resets the counter after a wakeup; a spurious call is harmless.
    pub fn drain(&self) {
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into a local u64 from a descriptor this struct owns; EAGAIN
        // (nothing signalled) is expected and ignored.
        #[allow(unsafe_code)]
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&raw mut value).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
