//! A Linux eventfd: a doorbell. Other shards ring a shard's doorbell when they post it mail,
//! and an `io_uring` disk rings one on every completion (`IoUringDisk::register_eventfd`), so
//! a shard sleeps in one place and still wakes for both.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd. Created non-blocking; the `io_uring` driver makes it blocking, so that a read
/// submitted on its ring waits for the counter instead of failing with `EAGAIN`.
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

    /// Sets or clears `O_NONBLOCK`.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: fcntl on a descriptor this struct owns, with integer arguments only.
        #[allow(unsafe_code)]
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if nonblocking {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let status = unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
        if status < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Rings the doorbell: adds one to the counter (a write never blocks below 2^64 - 2).
    pub fn ring(&self) {
        let value = 1u64;
        // SAFETY: writes 8 bytes from a local u64 to a descriptor this struct owns.
        #[allow(unsafe_code)]
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&raw const value).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Resets the counter after a wakeup (non-blocking mode only); a spurious call is harmless.
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
